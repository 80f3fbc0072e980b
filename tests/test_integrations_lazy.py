"""The integrations import their frameworks only when used."""

import subprocess
import sys


def test_flopgraph_and_its_integrations_import_no_framework() -> None:
    # flopgraph.compat and flopgraph.integrations are attributes of the package, and
    # reaching them (or flops_per_batch, which needs no framework) imports none of
    # lightning, transformers, thop, fvcore
    code = (
        "import sys, flopgraph; flopgraph.compat.profile; "
        "flopgraph.integrations.flops_per_batch; "
        "print(sorted(m for m in ('lightning', 'transformers', 'thop', 'fvcore') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
