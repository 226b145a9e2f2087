"""The gateway: the one audited door to a person's portfolio (OAuth 2.0, FHIR R4 at /fhir/R4)."""
from coproduction.service import GATEWAY, PartSpec, Worker

SPEC = PartSpec(
    name="gateway", kind=GATEWAY, port=8000, description="The one door to a person's portfolio",
    app_module="gateway.app", db_pool_size=10, rate_limited=True,
    workers=(Worker("gateway-consumer", ("consume",)), Worker("gateway-deliver", ("deliver",)),
             Worker("gateway-audit-sequencer", ("audit", "sequence"))),
)
