"""scipy's own ``integrate/_ivp/tests/test_ivp.py`` with ``gpuivp.solve_ivp`` swapped in.

The test file is copied from the installed scipy at test time (never vendored); its
``from scipy.integrate import solve_ivp`` is rewritten to import ``scipy_suite_swap.solve_ivp``,
which runs ``backend="auto"``, or scipy's explicit Runge-Kutta methods forced onto ``numba``
or (vectorized where ``fun`` allows) ``numpy``. The copy runs under pytest in a subprocess;
every test must pass except those listed in ``KNOWN_FAILURES`` (also listed, with the same
reasons, in the README).
"""
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import scipy.integrate

HERE = Path(__file__).resolve().parent

#: Tests of scipy's suite left failing, per configuration, with the reason.
KNOWN_FAILURES = {
    "auto": {},
    "numba": {},
    "numpy": {},
}

CONFTEST = '''
import pytest

@pytest.fixture
def num_parallel_threads():
    return 1  # the pytest-run-parallel fixture scipy's tests take; one thread here
'''


def scipy_test_file():
    path = Path(scipy.integrate.__file__).parent / "_ivp" / "tests" / "test_ivp.py"
    if not path.exists():
        pytest.skip(f"the installed scipy has no {path}")
    return path


def swapped_copy(tmp_path):
    """scipy's test_ivp.py in ``tmp_path`` with ``solve_ivp`` from scipy_suite_swap."""
    source = scipy_test_file().read_text()
    pattern = r"^from scipy\.integrate import solve_ivp, "
    assert len(re.findall(pattern, source, flags=re.M)) == 1, "scipy's imports changed"
    source = re.sub(pattern, "from scipy_suite_swap import solve_ivp\nfrom scipy.integrate import ",
                    source, count=1, flags=re.M)
    (tmp_path / "test_ivp_gpuivp.py").write_text(source)
    (tmp_path / "conftest.py").write_text(CONFTEST)
    return tmp_path / "test_ivp_gpuivp.py"


def run_suite(tmp_path, config):
    """Failed test ids of the swapped suite under ``config``, and pytest's output."""
    test_file = swapped_copy(tmp_path)
    report = tmp_path / "report.xml"
    env = dict(os.environ, GPUIVP_SUITE_BACKEND=config,
               PYTHONPATH=os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly",
         "--rootdir", str(tmp_path), "-c", os.devnull, f"--junitxml={report}",
         "-W", "ignore::pytest.PytestUnknownMarkWarning", str(test_file)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1500)
    assert report.exists(), proc.stdout + proc.stderr
    failed, total = set(), 0
    for case in ET.parse(report).iter("testcase"):
        total += 1
        if case.find("failure") is not None or case.find("error") is not None:
            failed.add(case.get("name"))
    return failed, total, proc.stdout


@pytest.mark.slow
@pytest.mark.parametrize("config", ["auto", "numba", "numpy"])
def test_scipys_own_suite_passes_with_gpuivp(tmp_path, config):
    failed, total, output = run_suite(tmp_path, config)
    assert total >= 50, output
    expected = set(KNOWN_FAILURES[config])
    assert failed == expected, (f"failing: {sorted(failed - expected)}; passing now, drop "
                                f"from KNOWN_FAILURES: {sorted(expected - failed)}\n{output}")
