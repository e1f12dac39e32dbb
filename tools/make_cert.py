"""Regenerate ``sgc.pem.example``: a self-signed certificate and key for
localhost / 127.0.0.1 / ::1, for local tests only (never production).

    python tools/make_cert.py [OUT]   (default: sgc.pem.example)
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from realtime.net.tls import generate_self_signed  # noqa: E402


def main() -> None:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "sgc.pem.example")
    out.write_bytes(generate_self_signed(days=3650))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
