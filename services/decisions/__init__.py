"""Shared decision-making (NICE NG197): the options, what matters to the person, and what was decided."""
from coproduction.service import SERVICE, PartSpec, Worker

SPEC = PartSpec(
    name="decisions", kind=SERVICE, port=8003, description="Shared decision-making (NICE NG197)",
    app_module="services.decisions.app", routes=("decisions",), scopes=("decisions:read", "decisions:write"),
    event_prefix="decision", fhir_resource="Task", label="Shared decision", short_label="Decision",
    workers=(Worker("decisions-relay", ("relay", "decisions")),),
)
