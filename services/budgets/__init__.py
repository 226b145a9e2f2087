"""Personal health budgets (and Care Act personal budgets)."""
from coproduction.service import SERVICE, PartSpec, Worker

SPEC = PartSpec(
    name="budgets", kind=SERVICE, port=8002,
    description="Personal health budgets (and Care Act personal budgets): money agreed "
                "with the person, tied to their plan, spent on what serves their priorities",
    app_module="services.budgets.app", routes=("budgets",), scopes=("budgets:read", "budgets:write"),
    event_prefix="budget", fhir_resource="Account", label="Personal budget", short_label="Budget",
    workers=(Worker("budgets-relay", ("relay", "budgets")),),
)
