"""14. Search quality across a suite: section 4's comparison on the problems the field uses.

Section 4 compares kubetune with its rivals on four problems; a default
chosen on four can be tuned to them. This section runs the same runners
(bench/search.py) on a broad suite: section 4's problems, the synthetic
functions of bench/suite_problems.py and the real scikit-learn tables of
bench/suite_tables.py, and reports the way the field does (BBOB, HPOBench):
per problem the median regret and its IQR at 10, 20, 30 and 45 trials;
across the suite each method's average rank (per problem, the rank of its
median regret after BUDGET trials) and the problems where it is best or
within noise of the best (its median no higher than the best median's
run's upper quartile); and, for parallel runs, regret against wall-clock
rounds. Candidates for kubetune's default search run at p1 and p8 on the
same seeds as the default's first runs. A goal's verdict that 20 seeds
leave to chance is judged again on 60 (bench/settled.py).

``python -m bench suite`` (about 70 minutes on two cores); the CNN joins where section 4
has cached all its evaluations (bench/.cache/search-evaluations.json).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from scipy.stats import rankdata

from bench import settled, suite_problems, suite_tables
from bench.common import Context, Section, log, machine, table
from bench.search import (
    BEYOND,
    BUDGET,
    NEEDS_TORCH,
    GoalRow,
    collected,
    goals,
    goals_table,
    installed,
    median_iqr,
    problem_table,
    regret,
    run_cells,
    shelves,
    versus,
    versus_table,
)
from bench.search_cnn import Surrogate, surrogate
from bench.search_problems import Problem, cnn_problem
from kubetune.spec import Categorical, Dimension, Integer, Real

# 20 seeds is the field's count. Candidates are screened on fewer, paired with the default's first
# seeds.
SEEDS = 20
CANDIDATE_SEEDS = 5
WORKERS = 2  # on demand, not beside the cluster tests: both cores
RIVALS = ("gp_minimize", "optuna TPE", "optuna GP")
METHODS = ("kubetune p1", "kubetune p8", *RIVALS, "random")
CANDIDATES = ("global", "sobol", "gp_hedge")  # words of bench.search.method_run
ROUNDS = (2, 4, 6)  # wall-clock rounds of parallel 8 (each trial lasts one round)
NAMES = (*suite_problems.MAKERS, *suite_tables.TABLES)
SMOKE_NAMES = ("log_bowl4", "ackley_cat", "svm_digits")


def all_problems(names: Sequence[str], tables: Path, smoke: bool) -> dict[str, Problem]:
    """The named problems (the workers' maker: picklable as a partial)."""
    synthetic = [n for n in names if n in suite_problems.MAKERS]
    real = [n for n in names if n in suite_tables.TABLES]
    return {**suite_problems.problems(synthetic), **suite_tables.problems(real, tables, smoke)}


def cached_cnn() -> Surrogate | None:
    """Section 4's CNN surrogate where its run cached every real evaluation here; none are trained."""
    f = collected()
    return surrogate(f) if f else None


def run(ctx: Context) -> Section:
    budget, seeds, cseeds = (12, 1, 1) if ctx.smoke else (BUDGET, SEEDS, CANDIDATE_SEEDS)
    names = list(SMOKE_NAMES if ctx.smoke else NAMES)
    tables = ctx.work / "suite-tables.json" if ctx.smoke else suite_tables.TABLES_FILE
    cnn = None if ctx.smoke else cached_cnn()
    more = functools.partial(all_problems, names, tables, ctx.smoke)
    found = {**more(), **({"cnn": cnn_problem(cnn)} if cnn else {})}
    methods = installed(METHODS, ctx.smoke)
    log(f"suite: {len(found)} problems, {len(methods)} methods, {seeds} seeds")
    kept = () if ctx.smoke else shelves()
    main = run_cells(list(found), methods, seeds, budget, cnn, more, WORKERS, kept)
    tried = [f"kubetune p{p} {c}" for c in CANDIDATES for p in (1, 8)]
    candidates = run_cells(list(found), tried, cseeds, budget, cnn, more, WORKERS, kept)
    rivals = [m for m in RIVALS if m in methods]
    left_open = settled.open_goals(*goal_verdicts(found, main, rivals), rivals, math.ceil(budget * 1.5))
    extra = settled.more_seeds(left_open, budget, cnn, more, WORKERS, kept)
    section = _section(found, main, candidates, extra, methods, budget, seeds, cseeds)
    section.data["kept_runs"] = sum(k.hits for k in kept)
    return section


# --- statistics -------------------------------------------------------------------


def at(problem: Problem, curves: list[list[float]], k: int) -> list[float]:
    """Each run's regret after k trials (its last, for a shorter run)."""
    return [float(regret(c, problem.optimum)[min(k, len(c)) - 1]) for c in curves]


def ranks(at_k: dict[str, list[float]]) -> dict[str, float]:
    """Each method's rank by median regret (1 best; ties share their mean rank)."""
    medians = [float(np.median(v)) for v in at_k.values()]
    return dict(zip(at_k, (float(r) for r in rankdata(medians)), strict=True))


def best_or_tied(at_k: dict[str, list[float]]) -> set[str]:
    """The methods whose median is within noise of the best: no higher than the best's upper quartile."""
    best = min(at_k, key=lambda m: float(np.median(at_k[m])))
    q3 = float(np.percentile(at_k[best], 75))
    return {m for m, v in at_k.items() if float(np.median(v)) <= q3}


def summary(found: dict[str, Problem], main: dict[str, dict[str, list[list[float]]]], k: int) -> str:
    """Each method's average and median rank over the suite, and where it is best or tied."""
    per = {name: {m: at(p, main[name][m], k) for m in main[name]} for name, p in found.items()}
    rank = {name: ranks(v) for name, v in per.items()}
    tied = {name: best_or_tied(v) for name, v in per.items()}
    rows = []
    for m in next(iter(main.values())):
        r = [rank[n][m] for n in found]
        wins = [n for n in found if m in tied[n]]
        reached = sum(np.median(per[n][m]) <= found[n].target for n in found)
        rows.append([m, f"{np.mean(r):.2f}", f"{np.median(r):g}", f"{len(wins)}/{len(found)}",
                     f"{reached}/{len(found)}"])  # fmt: skip
    return table(
        ["method", "average rank", "median rank", "best or within noise", "median run on target"], rows
    )


def goal_verdicts(
    found: dict[str, Problem], main: dict[str, dict[str, list[list[float]]]], rivals: Sequence[str]
) -> tuple[list[GoalRow], list[GoalRow]]:
    """The goals' rows: parallel 1 against the rivals, parallel 8 against random."""
    return (
        [v for n, p in found.items() if (v := versus(p, main[n], rivals))],
        [g for n, p in found.items() if (g := goals(p, main[n]))],
    )


def rounds_row(problem: Problem, runs: dict[str, list[list[float]]], budget: int) -> list[str]:
    """Parallel 8 after ROUNDS wall-clock rounds (8 trials a round), parallel 1 after 6 and ``budget``."""
    p8 = [median_iqr(at(problem, runs["kubetune p8"], 8 * r)) for r in ROUNDS]
    p1 = [median_iqr(at(problem, runs["kubetune p1"], r)) for r in (ROUNDS[-1], budget)]
    return [problem.name, *p8, *p1]


def candidate_rows(
    found: dict[str, Problem],
    main: dict[str, dict[str, list[list[float]]]],
    tried: dict[str, dict[str, list[list[float]]]],
    seeds: int,
    budget: int,
) -> tuple[list[list[str]], list[list[str]]]:
    """Per problem, the default and each candidate at p1 (after ``budget``) and p8 (after 1.5x);
    per candidate, its median rank against the default over the suite and where it is clearly
    worse or better (its median beyond the default's IQR)."""
    detail, verdicts = [], []
    for p in (1, 8):
        k = budget if p == 1 else math.ceil(budget * 1.5)
        default = f"kubetune p{p}"
        names = [default, *(f"{default} {c}" for c in CANDIDATES)]
        per = {
            n: {m: at(prob, (main[n][m][:seeds] if m == default else tried[n][m]), k) for m in names}
            for n, prob in found.items()
        }
        for n in found:
            detail.append([n, f"p{p}, {k}", *(median_iqr(per[n][m]) for m in names)])
        rank = {n: ranks(v) for n, v in per.items()}
        for m in names:
            quartiles = {n: np.percentile(per[n][default], [25, 75]) for n in found}
            worse = [n for n in found if np.median(per[n][m]) > quartiles[n][1]]
            better = [n for n in found if np.median(per[n][m]) < quartiles[n][0]]
            verdicts.append([m, f"{np.median([rank[n][m] for n in found]):g}",
                             f"{np.mean([rank[n][m] for n in found]):.2f}",
                             ", ".join(better) or "-", ", ".join(worse) or "-"])  # fmt: skip
    return detail, verdicts


# --- the section ------------------------------------------------------------------

# How the default's trust region was chosen: screened with throwaway patches, 5 seeds, the
# suite's problems, against the previous default (every ask over the whole space); the losers
# were not kept as options, so their rows cannot be rerun from here.
TRUST_REGION_CHOICE = (
    "**How the trust region was chosen.** The previous default asked every point over the whole "
    "space. Over 3 seeds, 32 % of the coordinates it asked after the initial design on rosenbrock4, "
    "and 14-24 % on rastrigin5, ackley5 and styblinski_tang10, lay within 1 % of a bound (22-40 % "
    "at parallel 8), where uniform points lie 2 % of the time: the GP's variance peaks at the edges "
    "of a landscape it cannot yet explain. Three remedies were screened at 5 seeds against it "
    "(problems clearly better / clearly worse, at p1; at p8): a dimension-scaled log-normal prior "
    "on the length scales (Hvarfner et al. 2024, BoTorch's default), 1 / 10; 0 / 12, rejected; "
    "TuRBO's trust region at every ask, 9 / 2 (ackley5, hgb_cancer); 5 / 3 (log_bowl4, ackley_cat, "
    "hgb_cancer), rejected; the trust region every other ask and the whole space between, 6 / 1 (levy4_int); "
    "5 / 2 (hartmann6, log_bowl4), adopted as `optimizer.trust_region: auto` and measured above "
    "at 20 seeds, `global` being the previous default. Section 15 checks it on problems that "
    "played no part in the choice."
)

# Screened after Optuna's GP sampler was measured, with throwaway patches as above, and not adopted.
LATER_SCREENS = (
    "**Screened since, not adopted.** Once measured, Optuna's GP sampler leads on smooth problems "
    "(section 15) and on log_bowl4 and levy4_int. Six changes were screened at 5 seeds, paired with "
    "the default's first 5, on these 17 problems and section 15's 6, which therefore no longer hold "
    "out a change chosen from them (problems clearly better / clearly worse at p1 after 30 trials): "
    "local asks only after a trial that did not improve the best, 2 / 3; local asks only after d "
    "model-based trials, 2 / 7; local asks polished by L-BFGS from their best candidates, 2 / 4, or "
    "from the best trial on log EI, as Optuna starts its search, 3 / 7; Optuna's length-scale prior "
    "(a penalty of 0.1 (l^2 + l^-2) on each normalised length scale, least at l = 1), 6 / 7: far "
    "better on log_bowl4, levy4_int, rosenbrock4 and powell8, worse on rastrigin5, ackley5, "
    "michalewicz5, ellipsoid_rot6 and the noisy problems; that prior on the whole-space asks' model "
    "alone, the trust region's asks keeping the free fit, 7 / 4 (better on mixed, rosenbrock4, "
    "ackley5, log_bowl4: 0.003 against 0.0205, beale, griewank5, powell8; levy4_int 0.32 against "
    "4.1; worse on rastrigin5, michalewicz5, ackley5_noisy, hgb_cancer) and at p8 6 / 4 (worse on "
    "branin, schwefel4, goldstein_price, svm_digits). The last then ran in full, 20 seeds here and "
    "10 in section 15, beside the same rivals' runs. At p1 it mended log_bowl4 (0.0024 against "
    "0.016) and levy4_int (1.59 against 2.76) and led section 15 (average rank 2.33 against 3.50), "
    "but lost the suite: average rank 2.32 against 1.88, best or within noise on 12 problems against "
    "15, beyond a rival's upper quartile on ellipsoid_rot6, ackley5, styblinski_tang10, michalewicz5 "
    "and ackley5_noisy. At p8 its average rank was 4.15 against 5.00. Rejected: it trades the "
    "multimodal problems for the smooth ones at p1, and section 15's six had taken part in choosing it."
)


LENGTH_SCALE_CHOICE = (
    "**Adopted since: the prior where it predicts better.** The rejected prior fixed the smooth "
    "problems and broke the multimodal ones, so the default now lets the data choose, ask by ask: "
    "on the whole-space turns the kernel is fitted twice, freely and with that prior, and the fit "
    "whose leave-one-out predictions of the trials are more likely is used (closed form, Rasmussen "
    "& Williams eq. 5.10-5.12; the evidence would not do, as it counts the prior's own log). It "
    "screened at 2 / 0 at p1 (beale, griewank5). Measured above at 20 seeds against the previous "
    "default's run on the same seeds and rivals: p1's median is lower on 10 problems, higher on 3 "
    "(ellipsoid_rot6 1.23e+05 against 9.48e+04, ackley5 14.3 against 12.8, mixed by 0.2 %), the same "
    "on 4; p8's lower on 11, higher on 4 (log_bowl4 0.0147 against 0.0126, hgb_cancer, and two by "
    "under 1 %); no problem clearly worse at either. The summary barely moves: p1's average rank "
    "1.88 as before, best or within noise on 14 problems against 15; ellipsoid_rot6 is now beyond "
    "TPE's upper quartile, and log_bowl4 (0.0149) and levy4_int (2.38) still beyond Optuna GP's; p8 "
    "is now ahead of random on styblinski_tang10 (170.5 against 171.6), no longer on ackley5_noisy "
    "(18.54 against 18.50). Section 15: on its first six p1's median is lower on five (griewank5 "
    "clearly: 0.83 against 1.05), p8's on five. Its six unseen problems were also run once with the previous "
    "default (10 seeds, not tabled): p1 lower on shekel4 and trid6 (257 against 552), the same on "
    "zakharov5 and eggholder, higher on alpine6 (7.34 against 6.50) and clearly worse on "
    "log_ackley3 (3.78 against 3.38 [3.08, 3.67]); p8 lower on four, higher on eggholder and "
    "alpine6. Adopted by section 14's rule; log_ackley3, multimodal on a log scale, is where the "
    "prior's smoothness can still mislead. Cost: the third kernel fit of a whole-space turn; at "
    "1,000 finished trials suggest() takes 1.38 s of CPU on that turn on Hartmann-6's space and "
    "1.49 s on the mixed one, against 1.15 and 1.09 s on the trust region's turn "
    "(`.venv/bin/python -m bench.search_scale`; section 4's table predates the choice and times the "
    "trust region's turn alone)."
)

# Screened after the choice above, with throwaway patches as before, and not adopted.
SINCE_THE_CHOICE = (
    "**Screened after it, not adopted.** Why log_bowl4 still lags: over 10 seeds the leave-one-out "
    "choice kept the free fit on 97 of 100 whole-space asks; 5 of the 10 seeds end with x3, the "
    "bowl's weakest dimension (weight 0.3), within 0.11 decades of its upper bound, a regret of "
    "about 0.3 x 1.1^2 = 0.36. Followed ask by ask in one of them (seed 3), the free fit puts x3's "
    "length scale between 22 and 100 from its first model on, and at the bound of 100 from the "
    "17th trial on, as if x3 did not matter; no later ask moves x3 off its bound. Four changes, 5 "
    "seeds paired as above (clearly better / clearly worse): the prior's fit on every other "
    "whole-space ask and the free fit on the rest, no choice, 5 / 7 at p1 (log_bowl4 0.0039 against "
    "0.0185; worse on ellipsoid_rot6, rastrigin5, michalewicz5, hartmann6_noisy, beale, griewank5 "
    "and hgb_cancer); the prior's fit wherever the free fit has a length scale at its bound, the "
    "choice otherwise, 3 / 6 at p1 (log_bowl4 0.0095, not clearly better; worse on rastrigin5, "
    "michalewicz5, ellipsoid_rot6, ackley5_noisy, griewank5, hgb_cancer); `gp_hedge` at p8, which "
    "leads the candidates table at p8, on section 15's twelve problems at 45 trials: 3 / 3, worse "
    "on powell8 (1,855 against 862), zakharov5 (70.4 against 40.1) and alpine6, behind random on "
    "the first two, so its lead here fits these 17 problems (nor does it hedge as its name says: "
    "each whole-space ask builds a fresh skopt Optimizer, whose portfolio has no gains yet, so it "
    "draws EI, PI or LCB with equal odds); and the trust region centred on the trial the GP "
    "believes best, its mean the lowest, rather than on the lowest loss, which under noise is the "
    "luckiest trial: 1 / 1 at p1 (log_bowl4 0.0042 against 0.0185; beale) and 0 / 0 at p8, "
    "ackley5_noisy 16.6 against 18.1 at 45 trials. The last ran in full at 20 seeds: no problem "
    "clearly worse, but p1's median higher on 10 problems and lower on 5 (log_bowl4 0.0097 against "
    "0.0149, still beyond Optuna GP's upper quartile), best or within noise on 13 against 14; p8's "
    "lower on 5, higher on 4 (rosenbrock4 634 against 462), within 1 % on 8, ackley5_noisy among "
    "them (18.54). Rejected: its gains at 5 seeds were noise."
)

# The screens' own noise, measured with null screens (the default, reseeded), and the screen run
# after that.
SCREEN_NOISE = (
    "**What a 5-seed screen can tell.** Two null screens, the default with nothing changed but the "
    "seed of the trust region's random candidates, paired as above with the default's first 5 seeds "
    "at p1 on the 21 synthetic problems screened (section 15's first six among them; the two real "
    "problems, whose tables take long to build, left out), flagged 11 problems each: 3 / 8 and 1 / 10"
    " (clearly better / clearly worse). log_bowl4's median alone went from 0.0185 to 0.0068 in one "
    "and to 0.366 in the other, as its runs end near the optimum or stuck on an edge; beale, "
    "griewank5, ackley_cat and hartmann6_noisy came out worse in both, as in most screens above: the "
    "default's first 5 seeds ran well there, which made changes look harmful. A screen's counts "
    "therefore separate a change from the default only where far more lopsided than 1 / 10; the "
    "screens above are weaker evidence than their counts read, and only the changes run at 20 seeds "
    "(the length-scale prior, its choice, the trust region centred on the GP's mean) were measured. "
    "One more screen with that in mind, an edge probe for log_bowl4's trap: on every other "
    "trust-region turn where the best trial lies on the space's edge in a numeric dimension, the ask "
    "moves the one the GP writes off most (the longest length scale) inward by a random step up to "
    "the trust region's side, the rest of the best trial unchanged. It changed 31 of 105 runs at p1 "
    "and 27 at p8: 2 / 0 at p1 (log_bowl4 0.0074 against 0.0185, mixed) and 2 / 0 at p8 (log_bowl4 "
    "0.0175 against 0.0728, beale). Its log_bowl4 gain lies within the nulls' range, so it ran at 20 "
    "seeds (next paragraph)."
)

EDGE_PROBE = (
    "**The edge probe at 20 seeds.** Paired seed by seed with the default's runs (rerun here, their "
    "medians the table's to the digit), the probe's step drawn from the suggestion's own seed, a "
    "Wilcoxon signed-rank test on each problem's regret after 30 trials (45 at p8), p < 0.05 counted. "
    "At p1, 20 seeds on the 21 problems screened: it changed 137 of 420 runs, better on two "
    "problems, worse on none: log_bowl4 0.0052 [0.0034, 0.0100] against 0.0149 [0.0051, 0.364] (13 "
    "runs better, 3 worse, p = 0.004) and michalewicz5 2.50 against 2.60 (5 better, none worse, p = "
    "0.043: among 21 problems one such p is expected by chance). At p8, 10 seeds: 63 of 210 runs "
    "changed, log_bowl4 0.0101 against 0.0198 (7 better, 1 worse, p = 0.039), nothing worse. On "
    "section 15's six unseen problems (p1, 10 seeds, their first use since gp_hedge's screen): 12 of "
    "60 runs changed, none significantly (zakharov5 65.5 against 50.9, 2 better, 4 worse, p = 0.44). "
    "It moves no goal: log_bowl4 stays beyond Optuna GP's upper quartile (0.0052 against 0.0045), "
    "levy4_int's best never lay on an edge (no run changed), ellipsoid_rot6 stays just beyond TPE's "
    "(1.08e+05 against 1.06e+05), and p8 against random on ackley5_noisy is within noise either way. "
    "**Then in full, and rejected.** This section rerun with the probe in the default, every run made "
    "again (the rivals' with torch 2.15.0: their medians this table's to the digit), the real problems "
    "included, which the screens had left out: p1's median lower on 6 problems (log_bowl4, ackley5 11.7 "
    "against 14.3, rosenbrock4 190 against 251, ellipsoid_rot6 1.08e+05 against 1.23e+05, hartmann6, "
    "michalewicz5), higher on 6 (hgb_cancer 0.00156 [7.7e-04, 0.00392] against 9.9e-04, schwefel4 730 "
    "against 687, ackley_cat 3.53 against 3.28, mixed, hartmann6_noisy, branin), the same on 5; p1's "
    "average rank 1.76 against 1.88, median rank 1 against 2, best or within noise on 14 problems as "
    "before; p8's average rank 4.82 as before; every goal as before. Section 15 rerun likewise (10 "
    "seeds): p1's average rank 3.08 against 3.00, 3.50 against 3.17 on the unseen six (zakharov5 62.5 "
    "against 50.9), p8's 5.08 against 5.17. Paired with the default's 20 seeds "
    "on the two real problems: hgb_cancer at p1 is worse, 14 runs worse and 5 better (p = 0.01); at p8 "
    "9 and 9 (p = 0.98); svm_digits changed 2 runs at each. hgb_cancer's best configuration has its "
    "leaf size at the upper bound, as a real space's often has a bound in the optimum (the most trees, "
    "the largest leaf): there every probe is a trial spent off it. Rejected: a loss on one of the two "
    "real problems, the kind users bring, against a gain on one synthetic trap. **Then narrowed, and "
    "rejected.** The probe only of a coordinate whose length scale lies within 1 % of the fit's ceiling "
    "(100, the normalised space being 1 wide), the GP having written it off, as on log_bowl4; paired "
    "at 20 seeds at p1 with the default's runs on the 21 problems screened and the two real ones: it "
    "changed 61 of 420 runs and 8 of 40. log_bowl4 0.0086 [0.0036, 0.0212] against 0.0149 (9 runs "
    "better, 2 worse, p = 0.06), more than half its gap to Optuna GP's upper quartile left; "
    "hartmann6_noisy worse, 0.606 against 0.527 (6 runs worse, none better, p = 0.028); ellipsoid_rot6 "
    "1.48e+05 against 1.23e+05 (4 worse, none better, p = 0.07); hgb_cancer 0.0013 against 9.9e-04 (3 "
    "better, 5 worse, p = 0.58); svm_digits unchanged. Rejected at p1, so p8 was not run."
)

# Screened at 20 seeds after the edge probe, paired with the default's runs as the narrowed probe was.
WARPING_AND_EVERY_ASK = (
    "**Two more screens at 20 seeds, neither adopted.** Paired as the narrowed probe was: p1, the 21 "
    "problems screened and the two real ones, a Wilcoxon signed-rank test on regret after 30 trials. "
    "*Input warping*, the issue's candidate (HEBO's, BoTorch's): each normalised input bent by a "
    "Kumaraswamy CDF, 1 - (1 - x^a)^b, its a and b fitted with the kernel's hyperparameters (L-BFGS "
    "from the unwarped fit's optimum, under BoTorch's log-normal prior of sd 0.75), in the free fit "
    "and the prior's alike, the trust region's box still sized by the length scales. It changed "
    "every run: no problem better, 2 worse (hartmann6 0.536 against 0.264, 16 runs worse of 20, p = "
    "0.002; hartmann3 0.0066 against 0.0019, p = 0.001); log_bowl4 0.272 against 0.0149 (10 runs "
    "better, 10 worse); hgb_cancer worse, 0.0025 against 9.9e-04 (17 runs worse, p < 0.001); "
    "svm_digits the same. With 30 trials, two more parameters a dimension let the fit explain the "
    "trials by bending the inputs. Rejected. *The prior's fit offered on every ask*, the "
    "leave-one-out choice made on the trust region's turns as on the whole space's (one more kernel "
    "fit on each of the former): 236 of 420 runs changed, no problem clearly better or worse. p1's "
    "median lower on 11 problems (levy4_int 0.816 against 2.38, ellipsoid_rot6 8.05e+04 against "
    "1.23e+05: both then within their rivals' upper quartiles; log_bowl4 0.0099 [0.0033, 0.355], "
    "still beyond Optuna GP's), higher on 7 (ackley5 16.4 against 14.3, then beyond TPE's upper "
    "quartile of 14.6; hartmann6_noisy 0.672 against 0.527; rastrigin5 41.3 against 39.7), the same "
    "on 3. At p8, 10 seeds: 133 of 210 runs changed, none clearly; lower on 8, higher on 10 "
    "(rosenbrock4 823 against 610, rastrigin5 44.1 against 38.7), the same on 3. Section 15's unseen "
    "six (p1, 10 seeds): log_ackley3 3.35 against 3.78, zakharov5 45.2 against 50.9, shekel4 8.83 "
    "against 8.27, none p < 0.05. The real problems: hgb_cancer 8.2e-04 against 9.9e-04 at p1 (4 "
    "runs better, 4 worse), 7.3e-04 against 9.4e-04 at p8 (10 and 6, p = 0.44); svm_digits the same. "
    "Not adopted: it trades which p1 goals miss (ellipsoid_rot6 and levy4_int for ackley5) within "
    "the seeds' noise, and its median rank at p8 is no lower, as this section's rule asks."
)

LOG_EI = (
    "**Log EI at 20 seeds, rejected.** The issue's last candidate (Ament et al. 2023; Optuna's GP "
    "sampler maximises it): the logarithm of EI, computed so that it neither underflows nor loses "
    "its gradient far from the best (log(phi(z) + z Phi(z)) through the scaled complementary error "
    "function, its asymptote past z = -1000), paired as above. *On the whole-space asks*: skopt's "
    "candidates, whose best is EI's unless EI underflows, the best 5 polished by L-BFGS on log EI "
    "rather than on EI. It changed every run. At p1 no problem clearly better or worse; medians "
    "lower on 11, higher on 6, the same on 4 (log_bowl4 0.0145 against 0.0149; ellipsoid_rot6 "
    "9.69e+04, then within TPE's upper quartile; ackley5 15.8, then beyond it); the real problems "
    "the same (hgb_cancer 9.6e-04 against 9.9e-04, p = 0.70). At p8, 10 seeds: levy4_int clearly "
    "worse, 4.04 against 1.02 (9 runs worse of 10, p = 0.006), medians higher on 16 problems of 21. "
    "*On the trust region's asks too*, their best 5 random candidates polished likewise within the "
    "box, as Optuna polishes every ask: at p1 clearly worse on rastrigin5 (49.7 against 39.7, p = "
    "0.026), styblinski_tang10 (219 against 177, 14 runs worse of 20, p = 0.004) and goldstein_price "
    "(13.3 against 3.83, p = 0.021), medians higher on 14 problems; log_bowl4 0.0059 against 0.0149 "
    "(12 runs better, 8 worse, p = 0.50), still beyond Optuna GP's upper quartile. A precise local "
    "step makes the trust region greedier where the model has not seen the other minima, as the "
    "5-seed screen above suggested. Both rejected; the second was not run at p8."
)


LONG_SCALE_HALF = (
    "**Adopted since: the long half of the prior on every fit.** Why the free fit fails where "
    "Optuna's prior helps: it writes a dimension off, its length scale at the bound of 100, not only "
    "where the trials have barely resolved it (log_bowl4's x3, above) but also where it takes the "
    "dimension's wiggles for noise: fitted to 30 points of sin(25 x1) + x2, it sets x1's length "
    "scale to 100 and calls the wiggles noise (tests/test_gp.py). Optuna's prior, -0.1 (l^2 + "
    "1/l^2), stops both, but its second half also lengthens the short scales a multimodal loss "
    "needs, which is where it lost (above). Its first half alone, -0.1 l^2, which leaves short "
    "scales free, is now in every fit of `optimizer.trust_region: auto` (`none` keeps gp_minimize's "
    "free fit); the whole prior is still offered on the whole-space asks and chosen by "
    "leave-one-out. Screened at 20 seeds at p1 as above: clearly better on log_bowl4 (0.0011 against "
    "0.0149, all 20 runs better), styblinski_tang10 (144 against 177) and michalewicz5 (2.24 against "
    "2.60), worse on none; the real problems unchanged (hgb_cancer 6.1e-04 against 9.9e-04, 13 runs "
    "better and 7 worse, p = 0.33). Then this section and section 15 ran in full (the rivals' 1,360 "
    "runs and `global`'s 70 made again here came out identical to the digit, so section 15 reused "
    "its own). Paired with the previous default's runs: at p1 clearly better on the same three "
    "problems, worse on none, the median lower on 9 problems and higher on 7 (ackley5 14.9 against "
    "14.3, levy4_int 2.94 against 2.38, rastrigin5 41.0 against 39.7, hartmann6 0.287 against 0.264; "
    "none p < 0.2); at p8 clearly better on 7 (log_bowl4, hartmann6 0.185 against 0.430, rosenbrock4 "
    "181 against 462, mixed, ackley_cat, styblinski_tang10, svm_digits), worse on none, the median "
    "lower on 15 of 17. The summary: p1's average rank 1.65 against 1.88, median rank 1 against 2, "
    "best or within noise on 14 problems as before, its median run on target on 10 against 9; "
    "log_bowl4 now within every rival's upper quartile (Optuna GP's median is 0.0026), ackley5 now "
    "just beyond TPE's (14.9 against 14.6; 49 % of resamples say so), levy4_int further beyond "
    "Optuna GP's (80 % against 56 %), ellipsoid_rot6 beyond TPE's as before: three p1 misses, as "
    "before, two of them coin flips; p8's average rank 4.06 against 4.82, ahead of random at 45 "
    "trials on 16 problems against 15 (ackley5_noisy now; svm_digits's plateau ties it). Section 15 "
    "(10 seeds): p1's average rank 2.25 against 3.00, the lowest of any method there (Optuna GP's "
    "3.33), and 2.50 against 3.17 on the unseen six; clearly better on alpine6 (5.48 against 7.34) "
    "and eggholder (248 against 272), worse on none, the median lower on 7 of 12 (powell8 663 "
    "against 1,354, log_ackley3 3.34 against 3.78), higher on 5 (goldstein_price 9.14 against 2.07, "
    "7 runs worse of 10, p = 0.63); p8's 5.21 against 5.17, clearly better on griewank5, worse on "
    "none. Adopted by this section's rule. Cost: none measurable; at 1,000 finished trials suggest() "
    "takes 0.8-1.05 s of CPU on the trust region's turn and 1.35-1.5 s on the whole space's "
    "(Hartmann-6's and the mixed space, two sittings of 3 repeats; the previous default 1.0-1.3 and "
    "1.6-1.85 s in the same sittings)."
)

# Screened after the long half was adopted, with throwaway patches as before, and not adopted.
SINCE_THE_LONG_HALF = (
    "**Screened after it, not adopted.** Why levy4_int stays beyond Optuna GP's upper quartile: over "
    "50 seeds of the default at p1 (seeds 0-49), its two integer coordinates carry 64 % of the final "
    "best's loss (x1 37 %, x2 27 %). Levy on the integer grid has local minima whose neighbours are "
    "far worse (x2 = -8 costs 7.36, -9 and -7 cost 24.5 and 32.3), in the two runs followed ask by ask "
    "the fit gave such a coordinate a length scale under one step of its grid (0.03-0.04 against "
    "0.05), and the box, scaled by it, held the coordinate there. Three changes, run on levy4_int "
    "alone and paired seed by seed with the default (Wilcoxon signed-rank on the best after 30 "
    "trials): each integer's length scale bounded below by one step of its grid, 3.07 against 2.94 (20 "
    "seeds, 10 runs better, 10 worse); the integers' sides of the box not narrowed by their length "
    "scales, 3.38 against 3.25 (50 seeds, p = 0.59); the whole prior's fit alone on the whole-space "
    "asks, no leave-one-out choice, 1.83 against 3.25 (50 seeds, 30 runs better, 18 worse, p = 0.049), "
    "which then ran on the 21 problems screened (20 seeds at p1, paired with this section's runs): "
    "clearly worse on michalewicz5 (2.59 against 2.28, p = 0.022), better on none, levy4_int 1.81 "
    "against 2.94 (p = 0.49), ackley5 15.7 against 14.9; rejected, as its earlier form was (above). "
    "*EI's margin.* skopt's xi, 0.01, is in the metric's units: a whole point of an accuracy in [0, "
    "1], nothing of a loss in the thousands, so the same study in other units asks other points. Two "
    "scale-free forms, the acquisition computed on the losses standardized, screened likewise: a "
    "margin of 0.01 of their spread, clearly worse on branin (0.0139 against 9.1e-04) and log_bowl4 "
    "(0.0377 against 0.00114), all 20 runs worse on each, as the margin, large beside the last digits "
    "a smooth problem refines, stops EI from refining them; rejected. No margin (Optuna's and "
    "BoTorch's EI): at p1 no problem clearly better or worse, the median lower on 8 (ackley5 14.3 "
    "against 14.9; hartmann3 1.3e-04 against 0.0016, p = 0.08) and higher on 13 (ellipsoid_rot6 "
    "1.31e+05 against 1.17e+05; powell8 918 against 663, p = 0.08); the real problems the same "
    "(hgb_cancer 6.0e-04 against 6.1e-04, 9 runs better, 11 worse; svm_digits the same median); at p8 "
    "(10 seeds) clearly better on hartmann3 (1.7e-04 against 4.9e-04, 9 runs better of 10, p = 0.004), "
    "worse on none, the median lower on 8 and higher on 13 (michalewicz5 2.49 against 1.97, griewank5 "
    "1.00 against 0.80, p = 0.13); on section 15's unseen six (p1, 10 seeds) none clearly, lower on 4, "
    "higher on 2. Within the seeds' noise, ackley5's median (14.3) would fall within TPE's upper "
    "quartile of 14.6 and ellipsoid_rot6's (1.31e+05) further beyond TPE's (1.06e+05); with medians "
    "higher on 13 problems of 21 at p1 and at p8, this section's rule does not adopt it for quality. "
    "What it would bring is a search that no metric's units change; it changes the numbers of sections "
    "10, 13, 14 and 15 alike."
)

SCALE_FREE = (
    "**Adopted since: EI on the losses standardized, with no margin.** What the screen above would "
    "not adopt for quality is in the default for a search's correctness: the same study with its "
    "metric in other units now asks the same points (tests/test_optimizer.py scales the metric by "
    "2^-7 and 2^7; the old default failed it for the GP, trust region or not, and for RF). Every "
    "acquisition, the GP's, the trees' and section 13's constrained one, sees the losses "
    "standardized, and EI's and PI's margin is 0. This section and section 15 then ran in full, "
    "the rivals' runs kept. Paired seed by seed with the previous default's runs (Wilcoxon "
    "signed-rank on the best after 30 trials, 45 at p8): here no problem clearly better or worse at "
    "p1 (the closest: branin 0.00103 against 9.1e-04, 12 runs worse of 20, p = 0.053; levy4_int "
    "3.05 against 2.94, 14 runs better, p = 0.10) nor at p8 (ellipsoid_rot6 5.67e+04 against "
    "7.17e+04, p = 0.29). p1's average rank 1.59 as before; best or within noise on 15 problems "
    "against 14; no worse than every rival's upper quartile on 15 against 14, ackley5 now within "
    "TPE's (14.3 against 14.6, though 39 % of resamples say no), levy4_int beyond Optuna GP's (85 "
    "%) and ellipsoid_rot6 beyond TPE's (73 %) as before; p8 ahead of random on 16 as before "
    "(svm_digits's plateau ties it). Section 15 (10 seeds): p1's average rank 1.92 against 2.17, "
    "2.00 against 2.50 on the unseen six; no problem clearly better or worse at p1 (hartmann3 "
    "1.3e-04 against 0.00155, 9 runs better, p = 0.084; powell8 918 against 663, 7 runs worse, p = "
    "0.084); at p8 clearly better on hartmann3 (1.7e-04 against 4.9e-04, 9 runs better), worse on "
    "none. Its p1 misses are four as before: hartmann3 is now within Optuna GP's upper quartile, "
    "powell8 beyond TPE's (918 against 785; 73 %). Cost: one rescaling of the losses per ask."
)

SINCE_SCALE_FREE = (
    "**Screened since, at 20 seeds, not adopted: the trust region on two asks of three**, a "
    "whole-space turn every third ask. Paired seed by seed with the default's runs (p1: 20 seeds here "
    "and section 15's 10; p8: 10 seeds; Wilcoxon signed-rank on the best after 30 trials, 45 at p8, "
    "p < 0.05 counted): at p1 clearly better on rastrigin5 (38.5 against 42.4, 12 runs better, 4 "
    "worse, p = 0.006), worse on none, the median lower on 19 problems of 29 and higher on 9 (ackley5 "
    "17.0 against 14.3, beyond TPE's upper quartile; griewank5 1.08 against 0.88, beyond Optuna GP's); "
    "at p8 clearly better on hartmann3 and goldstein_price (1.18 against 2.09), worse on none, lower "
    "on 15 and higher on 13 (ellipsoid_rot6 1.04e+05 against 6.52e+04, p = 0.13). It gains no goal: "
    "ellipsoid_rot6 (1.27e+05) and levy4_int (2.18) stay beyond their rivals' upper quartiles at p1, "
    "and ackley5 would join them; rejected."
)

DISCRETE_SWEEP = (
    "**Adopted since: the discrete coordinates swept on the whole-space asks**, as Optuna's GP sampler "
    "searches its discrete parameters (kubetune/controller/search/discrete.py). skopt's L-BFGS "
    "polishes an integer or a categorical relaxed, then rounds it, so the point asked need not be the "
    "acquisition's best on the grid (tests/test_discrete.py has histories where it is not); the sweep "
    "sets each discrete coordinate in turn to the value the acquisition scores best, the others "
    "held, until a pass moves none (at most three). A space with no such coordinate is asked what it "
    "was before: this section's 12 real-valued problems came out identical, run for run, at p1 and "
    "p8, and so did section 15's 12. Screened on the five problems that have one, paired as above: at "
    "p1 levy4_int 1.98 against 3.05 (11 runs better, 6 worse, p = 0.19; at 50 seeds, both rerun on "
    "seeds 0-49, 2.46 against 3.25, 26 runs better, 14 worse, p = 0.016), the others within noise; "
    "at p8 (10 seeds) clearly better on mixed (0.052 against 0.215, 8 runs better, 1 worse, p = "
    "0.008), none worse. Then in full, 20 seeds, paired with the previous default's runs: at p1 no "
    "problem clearly better or worse (levy4_int as screened; ackley_cat 2.88 against 2.79, 8 runs "
    "worse, 6 better, p = 0.22; hgb_cancer 2 runs of 20 changed, both worse, one by 0.008 of log-loss; "
    "svm_digits 14 changed, 7 better, 7 worse); at p8 none clearly (mixed 0.198 against 0.402, 13 "
    "runs better, 6 worse, p = 0.10; levy4_int 1.80 against 1.98; ackley_cat 2.94 against 2.78, p = "
    "0.87). The summary: p1's average rank 1.53 against 1.59, best or within noise on 16 problems "
    "against 15, its median run on target on 11 against 10; no worse than every rival's upper "
    "quartile on 16 problems against 15: levy4_int now within Optuna GP's (1.98 against 2.09, a coin "
    "flip: 46 % of resamples say no), ellipsoid_rot6 beyond TPE's as before (73 %); p8's average rank "
    "4.12 against 4.18, ahead of random on 16 as before. Section 15, all real-valued, is unchanged. "
    "Cost: at 1,000 finished trials a whole-space ask takes 1.04 s of CPU against 0.90 s without the "
    "sweep on a space shaped as the CNN's (an integer of 508 values, scored at 256 of them), 1.08 "
    "against 1.11 on the mixed space (3 repeats each, `bench/search_scale.py`'s histories)."
)


AFTER_THE_SWEEP = (
    "**Screened after the sweep, at 20 seeds, none adopted.** Why the smooth problems lag "
    "(ellipsoid_rot6 here; dixon_price6, trid6, powell8 and zakharov5 in section 15, each beyond Optuna "
    "GP's or TPE's upper quartile): four changes, paired seed by seed with the default's runs (p1, 20 "
    "seeds here and section 15's 10; Wilcoxon signed-rank on the best after 30 trials, p < 0.05 "
    "counted). *The trust region's ask polished*: its best random candidate's real coordinates moved by "
    "L-BFGS-B on the acquisition within the box, as skopt polishes a whole-space ask. Every run changed: "
    "clearly better on branin alone (6.6e-04 against 0.00103, 15 runs better, 5 worse, p = 0.044), worse "
    "on none, the median lower on 16 problems of 29 and higher on 12; powell8 626 against 918 and trid6 "
    "167 against 228 (8 runs better, 2 worse, p = 0.16), ellipsoid_rot6 1.13e+05 against 1.31e+05 (9 "
    "runs better, 11 worse), still beyond TPE's 1.06e+05, and levy4_int 2.17 against 1.98, now beyond "
    "Optuna GP's: five misses as before. The trust region's asks are not short of precision. *The losses "
    "never warped* (`optimizer.warp: none`): clearly better on dixon_price6 (357 against 1,280, 9 runs "
    "better of 10, p = 0.049, within Optuna GP's upper quartile) and trid6 117 against 228 (p = 0.32), "
    "clearly worse on mixed (0.653 against 0.295, 16 runs worse, p = 0.002), rosenbrock4 (831 against "
    "175, 18 worse, p < 0.001) and log_bowl4 (0.0067 against 0.0014, 15 worse, p = 0.001): six misses "
    "against five. The warping, where the evidence prefers it, costs the quadratic bowls and pays on the "
    "steep valley and the decades. *The warping chosen by leave-one-out*: the plain and the warped fits "
    "compared by the density each gives the losses held out one at a time (as the prior's fits are), not "
    "by their evidence: clearly better on rastrigin5 (37.1 against 42.4, 11 runs better, 3 worse, p = "
    "0.022), clearly worse on levy4_int (3.81 against 1.98, 15 runs worse, p = 0.003), dixon_price6 "
    "2,118 against 1,280: six misses. *The warping held to a likelihood-ratio bar*, its evidence above "
    "the plain fit's by 1.92, as the trees' warping is held (kubetune/controller/warping.py): clearly "
    "better on rastrigin5 (41.2 against 42.4, 10 runs better, 6 worse, p = 0.049), worse on none, the "
    "median higher on 14 problems of 29 and lower on 10 (dixon_price6 978 against 1,280, p = 0.49; trid6 "
    "164 against 228): eight misses. A choice between the two fits that serves the bowls and keeps the "
    "valley is left open."
)


LATIN_HYPERCUBE = (
    "**Screened since, none adopted.** First at 10 seeds, on the ten problems where these choices part "
    "(mixed, ellipsoid_rot6, rosenbrock4, ackley5, log_bowl4, levy4_int, and section 15's dixon_price6, "
    "powell8, zakharov5 and trid6; p1, paired with the default's first 10 runs, as above). Four more "
    "choices of the warping: *warped on the whole-space asks alone*, the trust region's fitted to the "
    "losses as they are: clearly worse on log_bowl4 (0.0028 against 0.0011, p = 0.049), rosenbrock4 392 "
    "against 173 (p = 0.064), dixon_price6 787 against 1,280; *on the trust region's asks alone*: clearly "
    "worse on log_bowl4 (0.0070 against 0.0011, all 10 runs worse, p = 0.002); *the Yeo-Johnson exponent "
    "held at 0 or above* (no transform stronger than the logarithm): none clearly, rosenbrock4 311 "
    "against 173 (p = 0.084), dixon_price6 676 against 1,280 (p = 0.15); *held at -1 or above*: clearly "
    "worse on mixed (0.544 against 0.126, p = 0.016). The decades need the warping on both kinds of ask "
    "and the full range of its exponent; the choice that would serve the bowls stays open. Three initial "
    "designs: *five points rather than ten*, none clearly (powell8 355 against 918, p = 0.19); *a "
    "scrambled Sobol sequence*, clearly better on powell8 (422 against 918, 9 runs better, p = 0.014) and "
    "clearly worse on mixed (0.720 against 0.126, p = 0.049); *a latin hypercube* "
    "(`optimizer.initial_point_generator: lhs`: skopt's, one point in each of ten equal slices of every "
    "dimension, the most spread out of 1,000 such), clearly better on levy4_int (1.05 against 2.02, 9 "
    "runs better of 10, p = 0.027), worse on none, the median lower on 8 of the 10. It then ran on all 29 "
    "problems, paired as above (20 seeds here, section 15's 10): at p1 clearly better on ackley5 (7.69 "
    "against 14.3, 16 runs better, 4 worse, p = 0.008) and schwefel4 (454 against 657, 15 better, p = "
    "0.027), worse on none, the median lower on 17 problems of 29 and higher on 11; ellipsoid_rot6 "
    "5.57e+04 against 1.31e+05 (13 runs better, 7 worse, p = 0.12), within TPE's upper quartile "
    "(1.06e+05), levy4_int 1.10 against 1.98 (p = 0.053), hgb_cancer 3.5e-04 against 6.0e-04 (p = 0.07). "
    "The goal's misses would move rather than shrink: ellipsoid_rot6 no longer beyond a rival's upper "
    "quartile, hartmann6_noisy (1.17 against 0.61, p = 0.33) and ackley5_noisy (19.3 against 18.8, p = "
    "0.84; TPE's upper quartile 18.8) beyond; in section 15 dixon_price6, powell8, zakharov5 and trid6 "
    "still beyond, alpine6 (6.36 against 4.73, p = 0.38) and, by less than 1e-04, hartmann3 beside them. "
    "At p8 (10 seeds, 45 trials) it lost: clearly worse on hartmann6 (0.431 against 0.164, 8 runs worse "
    "of 10, p = 0.027), shekel4 (9.15 against 8.00, 9 worse, p = 0.049) and zakharov5 (39.7 against 27.5, "
    "8 worse, p = 0.049), better on none, the median higher on 19 problems of 29 and lower on 9 "
    "(ellipsoid_rot6 4.10e+04 against 6.52e+04, rosenbrock4 74 against 169). A plain latin hypercube, not "
    "the most spread out of many (skopt's `criterion: None`), at p8 likewise (10 seeds): clearly worse on "
    "levy4_int (3.01 against 1.52, 9 runs worse of 10, p = 0.037), clearly better on beale (0.096 against "
    "0.235, p = 0.037), the median lower on 15 problems and higher on 13. *Traced to the seeds*: those "
    "ten drew poor designs. After the first 8 trials, all from the design and the same at p1 and p8, the "
    "latin hypercube's median regret was above the random design's on 22 of the 27 synthetic problems at "
    "seeds 0-9. Over 200 seeds the best of its 10 points is above random's on 14 of 27, no worse overall, "
    "but worse where the optimum lies inside the box (dixon_price6 1.24 times random's, trid6 1.18, "
    "powell8 1.16; Mann-Whitney p <= 0.053): the most spread out of many keeps its points off the centre "
    "(in 6-d the point nearest it lies at a median 0.54 of the box's width, random's at 0.49). The plain "
    "one's best of 10 is below random's on 22 of 27 (its nearest point to the centre at 0.48). Both then "
    "ran at p8 on seeds 10-19 of this section's problems, paired over all 20 seeds: neither clearly worse "
    "on any problem (the spread one's hartmann6 0.341 against 0.180, 13 runs worse of 20, p = 0.097; the "
    "plain one's mixed 0.490 against 0.198, 14 worse, p = 0.18, and levy4_int 1.92 against 1.80, p = "
    "0.37), but each with the median higher on 10 of the 17 and lower on 6 (the spread one's real "
    "problems at 10 seeds), so neither has the lower median rank at p8 that the rule asks. The plain one "
    "at p1 in full (20 seeds here, section 15's 10): clearly better on hartmann3 (4.1e-05 against "
    "1.3e-04, 9 runs better of 10, p = 0.020) and dixon_price6 (639 against 1,280, all 10 better, p = "
    "0.002), worse on none, the median lower on 17 problems of 29 and higher on 11; ellipsoid_rot6 "
    "7.83e+04 against 1.31e+05, powell8 388 against 918 and trid6 110 against 228 then within every "
    "rival's upper quartile, but ackley5 (17.1 against 14.3, 10 runs better, 10 worse), ackley5_noisy, "
    "eggholder and alpine6 beyond: six problems missed against five, moved by the seeds rather than "
    "mended. Both rejected: what spreading the first trials gains one trial at a time it gives back at "
    "eight, all within the seeds' noise. What it left behind: skopt scores each of its 1,000 latin "
    "hypercubes by all its pairwise distances, 2.1 s of CPU at 1,000 points and some 13 minutes at "
    "`n_initial_points: 10000`, and every ask drew the whole design again; a study now draws it once, "
    "scoring fewer as it grows, and no design of 100 points or fewer changes "
    "(kubetune/controller/optimizer.py)."
)


NOISY_ACKLEY = (
    "**Why p8 trails random on ackley5_noisy, screened, none adopted.** On 60 seeds (above) p8's median "
    "after 45 trials is 18.6 against random's 18.1. Outside its funnel Ackley is flat at 19-21, and the "
    "noise has an sd of 1, so the model sees little there but noise: on 3 seeds at p1 the fit put the "
    "noise above the signal's variance on 23 % of ackley5_noisy's model-based asks, 5 % of rastrigin5's, "
    "2 % of hartmann6_noisy's and none of ackley5's, hartmann6's or ellipsoid_rot6's. Three changes, "
    "paired seed by seed with the default's runs on these three noisy or rugged problems (20 seeds; "
    "Wilcoxon signed-rank on the best after 45 trials at p8, 30 at p1): *the trust region centred on the "
    "trial the model predicts best*, not on the best observed, at p8 clearly worse on ackley5_noisy "
    "(18.9 against 18.1, 9 runs worse, none better, p = 0.008); *the whole space asked wherever the fit "
    "calls the losses mostly noise*, clearly worse at p8 (18.9 against 18.1, 11 runs worse, 2 better, p "
    "= 0.033) and at p1 19.3 against 18.8 (8 worse, 1 better, p = 0.051); *the trust region asked there "
    "instead*, at p8 17.6 against 18.1 but 8 runs worse and 3 better (p = 0.72), at p1 19.3 against 18.8 "
    "(p = 0.17). rastrigin5 and hartmann6_noisy stay within noise in all three. A best trial lucky in "
    "its noise is still a better centre than the model's smoothed guess, and the trust region is what "
    "gains on this problem; none of the three moves the verdict."
)


def dims_of(space: Sequence[Dimension]) -> str:
    """The space in words: '2 real, 1 log, 1 int, 1 cat'."""
    kinds = [
        "cat" if isinstance(d, Categorical) else "int" if isinstance(d, Integer)
        else "log" if isinstance(d, Real) and d.prior == "log-uniform" else "real"
        for d in space
    ]  # fmt: skip
    return ", ".join(f"{kinds.count(k)} {k}" for k in ("real", "log", "int", "cat") if k in kinds)


def _section(
    found: dict[str, Problem],
    main: dict[str, dict[str, list[list[float]]]],
    tried: dict[str, dict[str, list[list[float]]]],
    extra: dict[str, dict[str, list[list[float]]]],
    methods: list[str],
    budget: int,
    seeds: int,
    cseeds: int,
) -> Section:
    s = Section("suite", "14. Search quality across a suite of problems")
    longer = math.ceil(budget * 1.5)
    missing = [m for m in ("cnn",) if m not in found]
    s.add(
        f"{machine().line()}. Section 4's runners on {len(found)} problems: {budget} trials per sequential "
        f"run, {longer} per parallel run and random search, {seeds} seeds per method and problem "
        f"({cseeds} for the candidates), {WORKERS} worker processes. Methods: {', '.join(methods)}"
        + (
            ""
            if set(NEEDS_TORCH) <= set(methods)
            else " (no Optuna GP: it runs only where torch is installed, never in a smoke run)"
        )
        + (
            ". The CNN surrogate is left out: its real evaluations are not cached on this machine"
            if missing
            else ""
        )
        + ". Runs are kept between runs of this section and reused while the method's code, the problems "
        "and the libraries are unchanged (bench/kept_runs.py; a change to a module of kubetune's that its "
        "runs import reruns them, not the rivals'): the time at the end counts only the runs made"
        + ". Regret: the true (noise-free) loss of the best point tried so far minus the optimum; "
        "median [interquartile range] over seeds. Target (every new problem alike): the loss only 1 in "
        "200 uniform random points reaches (0.5 % quantile of 20,000 draws). Run: "
        "`.venv/bin/python -m bench suite`; one cell: `.venv/bin/python -m bench.search` serves section "
        "4's problems only."
    )
    rows = [[n, dims_of(p.space), f"{p.optimum:.4g}", f"{p.target:.3g}", suite_problems.WHY.get(n, "")]
            for n, p in found.items()]  # fmt: skip
    s.add("**The problems** (bench/suite_problems.py, bench/suite_tables.py)")
    s.add(table(["problem", "space", "optimum", "target regret", "why it is here"], rows))
    s.add(
        f"**Across the suite** at {budget} trials (equal trials for every method): the average and "
        "median over problems of each method's rank by median regret (1 is best, ties share), the "
        "problems where its median is within noise of the best (no higher than the best method's "
        "upper quartile), and where its median run reached the target."
    )
    s.add(summary(found, main, budget))
    rivals = [m for m in RIVALS if m in methods]
    versus_rows, goal_rows = goal_verdicts(found, main, rivals)
    if versus_rows:
        s.add(
            f"**Goal, parallel 1**: regret after {budget} trials, and whether kubetune p1's median is no "
            f"worse than each rival's upper quartile; {BEYOND}"
        )
        s.add(versus_table(versus_rows, rivals))
        held = [r.problem for r in versus_rows if all(v.holds for v in r.verdicts)]
        s.add(f"kubetune p1 is no worse than every rival on {len(held)} of {len(versus_rows)} problems.")
    if goal_rows:
        s.add(
            f"**Goal, parallel 8**: median regret against random at equal trials ({budget} and {longer}), "
            f"is p8's lower ({BEYOND}), and the trials parallel 8 needs to reach parallel 1's {budget}-trial "
            "regret."
        )
        s.add(goals_table(goal_rows))
        ahead = [r.problem for r in goal_rows if r.verdicts[-1].holds]  # at the longer budget
        behind = ", ".join(r.problem for r in goal_rows if not r.verdicts[-1].holds)
        s.add(
            f"kubetune p8 is ahead of random at {longer} trials on {len(ahead)} of {len(goal_rows)} problems"
            + (f"; not on {behind}." if behind else ".")
        )
    left_open = settled.open_goals(versus_rows, goal_rows, rivals, longer)
    if left_open:
        settled.report(s, left_open, found, main, extra, (versus_rows, goal_rows), rivals, longer)
    s.add(
        "**Wall-clock rounds**: each trial lasts one round; parallel 8 finishes 8 a round, parallel 1 "
        "one. Regret after R rounds, median [IQR]."
    )
    header = [
        "problem",
        *(f"p8, {r} rounds" for r in ROUNDS),
        f"p1, {ROUNDS[-1]} rounds",
        f"p1, {budget} rounds",
    ]
    s.add(table(header, [rounds_row(p, main[n], budget) for n, p in found.items()]))
    detail, verdicts = candidate_rows(found, main, tried, cseeds, budget)
    s.add(
        f"**Candidates for the default search** ({cseeds} seeds, paired with the default's first "
        f"{cseeds}): `global`, the previous default, every ask over the whole space "
        "(`optimizer.trust_region: none`); `sobol`, a scrambled Sobol initial design "
        "(`optimizer.initial_point_generator: sobol`) for the random one; `gp_hedge`, skopt's "
        "portfolio of EI, PI and LCB (`optimizer.acq_func: gp_hedge`). Rule for adoption: a lower "
        "median rank over the problems than the default's at both parallel 1 and 8, and no problem "
        "clearly worse (a median above the default's upper quartile). Ranks among the default and "
        f"the candidates, p1 after {budget} trials, p8 after {longer}."
    )
    s.add(
        table(["variant", "median rank", "average rank", "clearly better on", "clearly worse on"], verdicts)
    )
    s.add(TRUST_REGION_CHOICE)
    s.add(LATER_SCREENS)
    s.add(LENGTH_SCALE_CHOICE)
    s.add(SINCE_THE_CHOICE)
    s.add(SCREEN_NOISE)
    s.add(EDGE_PROBE)
    s.add(WARPING_AND_EVERY_ASK)
    s.add(LOG_EI)
    s.add(LONG_SCALE_HALF)
    s.add(SINCE_THE_LONG_HALF)
    s.add(SCALE_FREE)
    s.add(SINCE_SCALE_FREE)
    s.add(DISCRETE_SWEEP)
    s.add(AFTER_THE_SWEEP)
    s.add(LATIN_HYPERCUBE)
    s.add(NOISY_ACKLEY)
    s.add(table(["problem", "parallel, trials", "default", *CANDIDATES], detail))
    s.add("**Per problem**: regret after 10, 20, 30 and 45 trials, trials to the target.")
    for name, problem in found.items():
        s.add(f"**{name}** (optimum {problem.optimum:.6g}, target: regret <= {problem.target:.3g})")
        s.add(problem_table(problem, main[name]))
    s.data = {"main": main, "candidates": tried, "settled": extra, "seeds": seeds, "candidate_seeds": cseeds}
    return s
