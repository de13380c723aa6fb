"""Time the published GPTQ reference (IST-DASLab/gptq, gptq.py + quant.py) on one layer and save its result.

Usage (Debian: apt-get install python3-torch python3-numpy; the reference repository is not part of ours):
    python3 bench/gptq-reference/run_reference.py PATH/TO/gptq W.npy H.npy OUT_Q.npy [--wbits 2] [--groupsize 128]

W.npy and H.npy come from `msavq-bench export-layer`. The reference runs unmodified; only what a CPU-only torch
lacks is stubbed: the `transformers` import (for an isinstance check) and torch.cuda.synchronize.
"""
import argparse
import sys
import time
import types

import numpy as np
import torch
import torch.nn as nn

p = argparse.ArgumentParser()
p.add_argument("repo"); p.add_argument("weight"); p.add_argument("hessian"); p.add_argument("out")
p.add_argument("--wbits", type=int, default=2); p.add_argument("--groupsize", type=int, default=128)
p.add_argument("--threads", type=int, default=2)
p.add_argument("--compare", help="a dequantized weight from `msavq quantize-layer --method gptq` to compare with")
a = p.parse_args()

sys.modules["transformers"] = types.SimpleNamespace(Conv1D=type("Conv1D", (), {}))
sys.path.insert(0, a.repo)
torch.cuda.synchronize = lambda: None
from gptq import GPTQ  # noqa: E402
from quant import Quantizer  # noqa: E402

torch.set_num_threads(a.threads)
W = torch.from_numpy(np.load(a.weight)).float()
H = torch.from_numpy(np.load(a.hessian)).float()
layer = nn.Linear(W.shape[1], W.shape[0], bias=False)
layer.weight.data = W.clone()
g = GPTQ(layer)
g.H = H.clone()
g.quantizer = Quantizer()
g.quantizer.configure(a.wbits, perchannel=True, sym=False, mse=False)
tick = time.time()
g.fasterquant(blocksize=128, percdamp=0.01, groupsize=a.groupsize)
print(f"reference GPTQ {W.shape[0]}x{W.shape[1]} {a.wbits}-bit g{a.groupsize}: {time.time() - tick:.1f} s "
      f"(torch {torch.__version__}, {torch.get_num_threads()} threads)")
np.save(a.out, layer.weight.data.numpy())
if a.compare:
    ours = np.load(a.compare).astype(np.float32)
    ref = layer.weight.data.numpy()
    same = np.isclose(ours, ref, rtol=1e-5, atol=1e-7)
    print(f"agreement with {a.compare}: {same.mean() * 100:.3f} % of weights identical (to 1e-5), "
          f"max |diff| {np.abs(ours - ref).max():.3g}")
