"""Search strategies behind one interface (``Suggester``: tell the finished trials, ask with the running).

``optimizer.suggest`` picks one by ``optimizer.base_estimator`` and asks it
for every point past x0 and the initial design. Each strategy is a module:
``gp`` (EI on skopt's Gaussian process, the default), ``trees`` (skopt's
RF, ET, GBRT), ``multi`` (several objectives or constraints, on the GP);
the maths they share lives beside the package (kubetune/controller/gp.py,
warping.py).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from kubetune.controller.search.base import Observation, Suggester, loss_of, observations
from kubetune.controller.search.gp import GPSuggester
from kubetune.controller.search.multi import MultiSuggester
from kubetune.controller.search.trees import TreeSuggester
from kubetune.spec import Spec

__all__ = [
    "SUGGESTERS",
    "MultiSuggester",
    "Observation",
    "Suggester",
    "loss_of",
    "observations",
    "suggester_for",
]

# spec.BASE_ESTIMATORS names the same (the spec cannot import the controller's libraries).
SUGGESTERS: Mapping[str, Callable[[Spec, int], Suggester]] = {
    "GP": GPSuggester,
    "RF": TreeSuggester,
    "ET": TreeSuggester,
    "GBRT": TreeSuggester,
}


def suggester_for(spec: Spec, seed: int) -> Suggester:
    """The strategy base_estimator names; with several objectives or constraints (the spec allows
    them on GP alone), the multi-objective one (search/multi.py)."""
    if spec.multi:
        return MultiSuggester(spec, seed)
    return SUGGESTERS[spec.optimizer.base_estimator](spec, seed)
