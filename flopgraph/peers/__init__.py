"""Other counters side by side: thop, ptflops (both backends), fvcore, FlopCounterMode.

Each installed peer runs on a deep copy of the model with real CPU tensors
(:mod:`.run`); its total is converted to one stated unit (FLOPs) and the gap
to flopgraph is split, op by op, into labelled parts (:mod:`.results`) using a
restatement of the peer's rules over flopgraph's records (:mod:`.conventions`).
"""

from .results import STATED_UNIT, Gap, GapKind, PeerResult, Share
from .run import PEERS, PeerSpec, run_peer, run_peers

__all__ = [
    "PEERS", "STATED_UNIT", "Gap", "GapKind", "PeerResult", "PeerSpec", "Share", "run_peer",
    "run_peers",
]  # fmt: skip
