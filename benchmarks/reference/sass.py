"""Count the SASS instructions of a kernel's step loop: the FP32 instruction-issue bound.

Used by ``benchmarks/gpu.py`` (and importable as ``reference.sass``). Method: compile the kernel to a cubin for the
device's ``sm_XX`` (gpuivp's kernel: its PTX from numba.cuda through ``ptxas``;
the CUDA C reference: ``nvcc -cubin``), disassemble it (``cuobjdump -sass``, or
``nvdisasm``), find the loops from the backward branches (a ``BRA`` whose target
address is not after it), and take the innermost loop with the most FP32
instructions (then the most instructions): in a fixed-step kernel that is the
step loop, every instruction of which runs once per iteration on the normal path
(the exits for failures branch out of it). ``NOP`` padding is not counted. The
compiler may unroll the loop; the steps per iteration are its ``I2F``
instructions (every fixed step converts its index to float, for ``t0 + (i+1)
dt``), and the counts are given per step.

The bound is then ``instructions per step x steps x trajectories /
(SMs x 128 lanes x clock)``: an SM issues at most four warp instructions (128
thread instructions) per clock, whatever the instruction.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

#: FP32 pipe instructions (counted apart, for information).
FP32_OPS = ("FADD", "FMUL", "FFMA", "FMNMX", "FSETP", "FSEL", "FSET", "FCHK", "FSWZADD")

_INSTR = re.compile(r"/\*([0-9a-f]{4,})\*/\s+(.*?)\s*;")
_BRANCH = re.compile(r"\bBRA(?:\.[A-Z.]+)?\s+(?:!?U?P\w+\s*,\s*)?(?:`\((\.L_x_\d+)\)|(0x[0-9a-f]+))")
_LABEL = re.compile(r"^\s*(\.L_x_\d+):")


def find_tool(name):
    """``name`` (``cuobjdump``, ``nvdisasm``, ``ptxas``, ``nvcc``): from ``$NAME`` (upper
    case), ``PATH``, ``$CUDA_HOME/bin``, ``/usr/local/cuda/bin`` or an ``nvidia-*`` wheel."""
    env = os.environ.get(name.upper())
    if env and Path(env).exists():
        return env
    found = shutil.which(name)
    if found:
        return found
    dirs = [os.environ.get("CUDA_HOME", ""), os.environ.get("CUDA_PATH", ""), "/usr/local/cuda"]
    for d in dirs:
        if d and (Path(d) / "bin" / name).exists():
            return str(Path(d) / "bin" / name)
    for sp in map(Path, sys.path):
        for cand in sorted((sp / "nvidia").glob(f"*/bin/{name}")) if (sp / "nvidia").is_dir() \
                else ():
            return str(cand)
    return None


def functions(sass):
    """Split a ``cuobjdump -sass`` or ``nvdisasm`` listing into ``{function: lines}``."""
    out, name = {}, None
    for line in sass.splitlines():
        m = re.match(r"\s*Function : (\S+)", line) or \
            re.match(r"\s*\.section\s+\.text\.([^,\s]+)", line)
        if m:
            name = m.group(1)
            out[name] = []
        elif name is not None:
            out[name].append(line)
    return out


def loops(lines):
    """The loops of one function's listing: ``[(start, end, [instructions])]``."""
    instrs, labels, pending = [], {}, []
    for line in lines:
        lab = _LABEL.match(line)
        if lab:
            pending.append(lab.group(1))
            continue
        m = _INSTR.search(line)
        if not m:
            continue
        addr = int(m.group(1), 16)
        text = re.sub(r"\s+", " ", m.group(2)).strip()
        if text.startswith("."):  # a data directive, not an instruction
            continue
        for lab_name in pending:
            labels[lab_name] = addr
        pending = []
        instrs.append((addr, text))
    found = []
    for addr, text in instrs:
        b = _BRANCH.search(text)
        if not b:
            continue
        target = labels.get(b.group(1)) if b.group(1) else int(b.group(2), 16)
        if target is not None and target <= addr:
            body = [t for a, t in instrs if target <= a <= addr and not t.startswith("NOP")]
            found.append((target, addr, body))
    return found


def step_loop(lines):
    """The innermost loop with the most FP32 instructions (then the most instructions), or
    None: the integration's step loop, not a store loop that the compiler unrolled (as for
    ``t_eval`` output at ``t0 == t1`` on sm_80)."""
    all_loops = loops(lines)
    inner = [lp for lp in all_loops
             if not any(o is not lp and lp[0] <= o[0] and o[1] <= lp[1] and
                        (o[0], o[1]) != (lp[0], lp[1]) for o in all_loops)]
    return max(inner, key=lambda lp: (count(lp[2])[1], len(lp[2])), default=None)


def opcode(text):
    """An instruction's opcode without its predicate and modifiers: ``FFMA``, ``I2F``."""
    return re.sub(r"^@!?U?P\w+\s+", "", text).split(" ", 1)[0].split(".", 1)[0]


def count(body):
    """``(all instructions, FP32-pipe instructions)`` of a loop body."""
    return len(body), sum(opcode(t) in FP32_OPS for t in body)


def steps_per_iteration(body):
    """Fixed steps in one iteration of a (possibly unrolled) step loop: its ``I2F``
    instructions, one per step (the step index to float, for ``t0 + (i+1) dt``);
    1 when there is none (an adaptive loop)."""
    return max(1, sum(opcode(t) == "I2F" for t in body))


def disassemble(cubin):
    """SASS text of a cubin file, with cuobjdump or else nvdisasm; ``(text, tool)``."""
    for tool, args in (("cuobjdump", ["-sass"]), ("nvdisasm", [])):
        path = find_tool(tool)
        if path is None:
            continue
        proc = subprocess.run([path, *args, str(cubin)], capture_output=True, text=True)
        if proc.returncode == 0 and proc.stdout.strip():
            return proc.stdout, f"{tool} ({path})"
    raise RuntimeError("neither cuobjdump nor nvdisasm found (set $CUOBJDUMP or $NVDISASM, "
                       "or install the CUDA toolkit or the nvidia-cuda-cuobjdump wheel)")


def ptx_to_cubin(ptx, arch):
    """``ptxas -arch=arch`` of PTX text into a temporary cubin; returns its path."""
    ptxas = find_tool("ptxas")
    if ptxas is None:
        raise RuntimeError("ptxas not found (set $PTXAS or install the CUDA toolkit)")
    tmp = Path(tempfile.mkdtemp(prefix="gpuivp_sass_"))
    (tmp / "k.ptx").write_text(ptx)
    subprocess.run([ptxas, f"-arch={arch}", str(tmp / "k.ptx"), "-o", str(tmp / "k.cubin")],
                   check=True, capture_output=True, text=True)
    return tmp / "k.cubin"


def loop_count(cubin, function=None):
    """Instructions of the step loop of ``function`` (default: the only/first one).

    Returns
    -------
    dict
        ``instructions`` and ``fp32`` per step, ``unroll`` (steps per iteration of the
        loop), ``function``, ``tool``, ``loop`` (start and end addresses in hex).
    """
    text, tool = disassemble(cubin)
    funcs = functions(text)
    if not funcs:
        raise RuntimeError(f"no function found in the SASS of {cubin}")
    name = function if function in funcs else next(
        (f for f in funcs if function and function in f), next(iter(funcs)))
    lp = step_loop(funcs[name])
    if lp is None:
        raise RuntimeError(f"no loop found in the SASS of {name}")
    total, fp32 = count(lp[2])
    unroll = steps_per_iteration(lp[2])
    return dict(instructions=total / unroll, fp32=fp32 / unroll, unroll=unroll, function=name,
                tool=tool, loop=f"{lp[0]:#x}-{lp[1]:#x}")


def issue_bound_s(instr_per_step, steps, trajectories, sms, clock_hz, lanes=128):
    """Seconds to issue ``instr_per_step x steps x trajectories`` thread instructions."""
    return instr_per_step * steps * trajectories / (sms * lanes * clock_hz)
