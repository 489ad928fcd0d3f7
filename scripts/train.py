"""Train an xEdgeFace adapter: `accelerate launch scripts/train.py --config CONFIG.json [--key value ...] [--resume]`.

Every field of `hfr_hf.training.TrainingConfig` can be set in the JSON/YAML file or overridden as `--key value`
(`--loss.margin 0.2` for the loss); `--help-config` lists them. Runs without `accelerate launch` too (one process).
`--adapter_preset auto` searches presets × learning rates on the validation identities first (`--auto_budget_s`,
`--auto_epochs`, `--auto_presets ln,ln_stem`, `--real_validation_data FOLDER`; one process), then trains the best.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import MISSING, fields

from hfr_hf.losses import XEdgeFaceLossConfig
from hfr_hf.training import TrainingConfig, load_config, train


def config_help() -> str:
    """One line per option, with its default and help."""
    lines = []
    for cls, prefix in ((TrainingConfig, ""), (XEdgeFaceLossConfig, "loss.")):
        for f in fields(cls):
            if f.name == "loss":
                continue
            if f.default is not MISSING:
                default = f"default {f.default!r}"
            elif f.default_factory is not MISSING:
                default = f"default {f.default_factory()!r}"
            else:
                default = "required"
            lines.append(f"  --{prefix}{f.name} ({default}): {f.metadata.get('help', '')}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="JSON or YAML file of TrainingConfig fields")
    parser.add_argument("--resume", action="store_true", help="continue from the newest complete checkpoint")
    parser.add_argument("--help-config", action="store_true", help="list every training option and exit")
    args, overrides = parser.parse_known_args(argv)
    if args.help_config:
        print(config_help())
        return 0
    try:
        config = load_config(args.config, overrides)
    except (ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    try:
        result = train(config, resume=args.resume)
    except (ValueError, FileNotFoundError, NotADirectoryError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    if result.report:
        search = result.report.get("preset_search")
        if search:
            chosen = search["chosen"]
            print(f"preset search: {chosen['preset']} at learning rate {chosen['learning_rate']:.0e}, {search['why']}")
        print(f"trained {result.global_step} steps; adapter in {result.adapter}; report in {result.report_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
