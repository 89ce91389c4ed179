pytest_plugins = [
    "tests.fixtures.infra",
    "tests.fixtures.s3",
    "tests.fixtures.models",
    "tests.fixtures.gateway",
]
