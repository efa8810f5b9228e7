"""``python -m services.cli``: the same as the ``incentives`` command.

``incentives up`` starts each service as ``python -m services.cli serve NAME`` with the running
interpreter, so children use the same environment even when the script is not on PATH.
"""

from services.cli.main import app

if __name__ == "__main__":
    app(prog_name="incentives")
