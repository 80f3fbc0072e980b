import sys

try:  # a Ctrl-C while the command line's modules import is one line too, as in main
    from .cli import main
except KeyboardInterrupt:
    print("flopgraph: interrupted", file=sys.stderr)
    raise SystemExit(130) from None

raise SystemExit(main())
