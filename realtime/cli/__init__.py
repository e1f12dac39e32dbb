"""The command line (SPEC §1): ``realtime serve | check | reload | app | user | key | listen | publish``."""

from realtime.cli.main import main as main
