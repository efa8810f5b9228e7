"""Shared helpers of this folder assert inside helper functions; rewrite them for clear failures."""

import pytest

pytest.register_assert_rewrite("tests.deploy.compose_model")
