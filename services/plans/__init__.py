"""Year of Care care and support planning."""
from coproduction.service import SERVICE, PartSpec, Worker

SPEC = PartSpec(
    name="plans", kind=SERVICE, port=8001, description="Year of Care care and support planning",
    app_module="services.plans.app", routes=("plans",), scopes=("plans:read", "plans:write"),
    event_prefix="plan", fhir_resource="CarePlan", label="Care plan", short_label="Plan",
    workers=(Worker("plans-relay", ("relay", "plans")),),
)
