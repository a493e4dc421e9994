"""Entry script of the self-contained `kubectl-capc` binary that scripts/release.py builds with PyInstaller.

PyInstaller needs a script, not a console-script entry point; this one only hands over to the same
`main()` that the pip-installed command runs, so both behave identically.
"""

import sys

from kubectl_capc.__main__ import main

if __name__ == "__main__":
    sys.exit(main())
