"""Standards mappings shared by the services and the gateway, importing neither.

``fhir_plans``: a care and support plan as FHIR R4 (CarePlan, Goal, Observation, Patient), and back
(``fhir_plans_in``); ``fhir_care``: budgets, shared decisions and course places as FHIR R4;
``fhir_bundles``: Bundles and OperationOutcomes; ``fhir_subscriptions``: the Subscriptions Backport
IG's topics, Subscription resources and notification Bundles. docs/fhir.md describes the mapping.
"""
