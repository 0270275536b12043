"""The default run (`python -m pytest -q`, about 3 minutes on 2 cores) leaves out the tests marked slow: multi-process
runs (DDP, SIGKILL and resume, the ablation and GPU-check scripts) and the fast-path check's graph tracing.
`python -m pytest -q -m slow` runs those (CI runs both commands); `-m "slow or not slow"` runs everything."""


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: a test of more than about 15 s; run with -m slow (CI does)")


def pytest_collection_modifyitems(config, items):
    if config.getoption("markexpr"):  # an explicit -m decides
        return
    slow = [item for item in items if item.get_closest_marker("slow")]
    if slow:
        config.hook.pytest_deselected(items=slow)
        items[:] = [item for item in items if not item.get_closest_marker("slow")]
