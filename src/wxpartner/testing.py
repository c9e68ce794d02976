"""pytest plugin (registered through the ``pytest11`` entry point): fixtures that start a wxpartner
server for an integrator's own tests. The fixtures arrive with the SDK issue; importing is free."""
