"""The one wiring point: what composes the kernel, the services and the gateway into a platform.

The command line (``cli``), the launcher that starts every part (``run``; the tests' harness uses
it too), the data generator (``seed``), the AsyncAPI document (``asyncapi``) and the demo story
(``demo``). It sits above ``gateway`` and ``services``, which sit above the kernel ``coproduction``.
"""
