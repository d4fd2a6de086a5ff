"""Loss ablation at the same budget: MSE only / + consistency / + priors.

    .venv/bin/python bench/ablation.py [--steps 600] [--out /tmp/ablation] [--eval-limit 150]

Each variant trains from the same seed with face_expr_ros/training/configs/default.yaml, changing
only the loss weights and the step budget, then is evaluated like `face_expr eval` (held-out
subjects; --eval-limit images per set and label). Prints one table.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from face_expr_ros.training.config import load_config
from face_expr_ros.training.evaluate import evaluate
from face_expr_ros.training.train import train

CONFIG = Path(__file__).resolve().parents[1] / "face_expr_ros" / "training" / "configs" / "default.yaml"
VARIANTS = {
    "MSE only": {"loss.consistency": 0.0, "loss.identity_prior": 0.0, "loss.expression_sparsity": 0.0},
    "+ consistency": {"loss.consistency": 1.0, "loss.identity_prior": 0.0,
                      "loss.expression_sparsity": 0.0},
    "+ priors": {"loss.consistency": 1.0, "loss.identity_prior": 1e-3, "loss.expression_sparsity": 1e-3},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--out", type=Path, default=Path("/tmp/ablation"))
    parser.add_argument("--eval-limit", type=int, default=150)
    args = parser.parse_args()
    rows = {}
    for name, losses in VARIANTS.items():
        out = args.out / name.replace(" ", "_").replace("+", "plus")
        config = load_config(CONFIG, {**losses, "output": str(out), "max_steps": args.steps,
                                      "max_minutes": None, "val_every_steps": args.steps,
                                      "patience": 10**6})
        start = time.monotonic()
        result = train(config, progress=False)
        metrics = evaluate(out / "best.safetensors", limit=args.eval_limit).to_dict()
        rows[name] = {"train": result, "eval": metrics, "minutes": (time.monotonic() - start) / 60}
        (args.out / "ablation.json").write_text(json.dumps(rows, indent=2, default=float))
    print(f"\nLoss ablation, {args.steps} steps each (batch 32), same seed and data; eval on held-out "
          f"subjects, at most {args.eval_limit} images per set/label")
    print(f"{'variant':<15} {'val NME68':>9} {'helen NME68':>11} {'ytf NME68':>9} {'helen NME51':>11} "
          f"{'smile AUC':>9} {'surprise AUC':>12}")
    for name, row in rows.items():
        e = row["eval"]
        print(f"{name:<15} {row['train']['best_val_nme68']:>9.4f} {e['nme']['helen_train']['nme68']:>11.4f} "
              f"{e['nme']['ytf_train']['nme68']:>9.4f} {e['nme']['helen_train']['nme51']:>11.4f} "
              f"{e['expression']['lfw_smile']['auc']:>9.3f} {e['expression']['fer_surprise']['auc']:>12.3f}")


if __name__ == "__main__":
    main()
