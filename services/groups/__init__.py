"""Self-management education groups (Expert Patients Programme, Co-Creating Health)."""
from coproduction.service import SERVICE, PartSpec, Worker

SPEC = PartSpec(
    name="groups", kind=SERVICE, port=8004,
    description="Self-management education: Expert Patients Programme, Co-Creating Health",
    app_module="services.groups.app", routes=("courses", "enrolments"),
    scopes=("groups:read", "groups:write", "groups:roster"),
    event_prefix="group", fhir_resource="EpisodeOfCare", label="Self-management course", short_label="Course",
    workers=(Worker("groups-relay", ("relay", "groups")),),
)
