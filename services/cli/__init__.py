"""The ``incentives`` command: run the embedded platform, one service, or admin tasks."""
