"""`distillery up` announces where the gateway listens, read as the gateway reads it."""

from deployer.settings import DeployerSettings
from shared.cli.embedded import BUS_IDENTITY_OF, GATEWAY_HOST, GATEWAY_PORT, gateway_url


def test_the_announced_address_is_the_gateways_own_default_and_env():
    defaults = DeployerSettings()
    assert gateway_url({}) == f"http://{defaults.gateway_host}:{defaults.gateway_port}/v1"
    env = {GATEWAY_HOST[0]: "0.0.0.0", GATEWAY_PORT[0]: "9001"}
    moved = DeployerSettings(_env_file=None, **{"gateway_host": "0.0.0.0", "gateway_port": 9001})
    assert gateway_url(env) == f"http://{moved.gateway_host}:{moved.gateway_port}/v1"
    assert {GATEWAY_HOST[0], GATEWAY_PORT[0]} == {
        f"{DeployerSettings.model_config['env_prefix']}{name}".upper()
        for name in ("gateway_host", "gateway_port")
    }


def test_the_gateway_speaks_as_the_deployer():
    assert BUS_IDENTITY_OF == {"gateway": "deployer"}
