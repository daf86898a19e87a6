"""A stand-in for your training script: no kubetune import, just arguments in and metrics lines out.

Its "loss" is a bowl with a known minimum, 0 at x=0.3, y=-0.5, variant=b, so
a study of it can be checked. It "trains" for --epochs epochs, printing one
metrics line per epoch; kubetune records each, and could stop it early.
"""

import argparse
import os
import time

PENALTY = {"a": 0.5, "b": 0.0}


def loss(x: float, y: float, variant: str) -> float:
    return (x - 0.3) ** 2 + (y + 0.5) ** 2 + PENALTY[variant]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--x", type=float, required=True)
    parser.add_argument("--y", type=float, required=True)
    parser.add_argument("--variant", choices=sorted(PENALTY), required=True)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    # Parameters also arrive as environment variables, upper-cased.
    print(f"trial {os.environ.get('KUBETUNE_TRIAL_INDEX')}: variant {os.environ.get('VARIANT')}")
    final = loss(args.x, args.y, args.variant)
    for epoch in range(1, args.epochs + 1):
        time.sleep(0.05)  # the work of one epoch
        # Converges to the final loss; the last epoch reports it exactly.
        print(f"kubetune: epoch={epoch} loss={final + 0.1 * (args.epochs - epoch)}", flush=True)


if __name__ == "__main__":
    main()
