"""`nmt train` on a CPU keeps freed memory for reuse: a large tensor allocated again touches no new pages."""

import subprocess
import sys
import textwrap

import pytest

CHURN = textwrap.dedent("""
    import resource, sys, torch
    from nmt.train.host_memory import keep_freed_memory
    if sys.argv[1] == "keep" and not keep_freed_memory():
        sys.exit(3)
    def faults_of_five_64mb_tensors():
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for _ in range(5):
            tensor = torch.empty(16 << 20).fill_(1.0)  # 64 MB, like the output layer's gradient of a big batch
            del tensor
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    print(min(faults_of_five_64mb_tensors() for _ in range(4)))
""")


def page_faults(mode: str) -> int:
    result = subprocess.run([sys.executable, "-c", CHURN, mode], capture_output=True, text=True)
    if result.returncode == 3:
        pytest.skip("the C library is not glibc: malloc's thresholds cannot be set here")
    assert result.returncode == 0, result.stderr
    return int(result.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt is Linux-only")
def test_freed_tensors_are_reused_without_new_page_faults():
    # By default glibc unmaps a freed 64 MB block, so each new one faults in all of its 16,384 pages.
    assert page_faults("default") > 5 * 10_000
    assert page_faults("keep") < 1_000
