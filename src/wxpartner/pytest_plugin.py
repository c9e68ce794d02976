"""The ``pytest11`` entry point ``wxpartner``: it loads the plugin, ``wxpartner.testing``, by the name
a project's own ``pytest_plugins = ["wxpartner.testing"]`` or ``-p wxpartner.testing`` uses, so
naming it there as well is harmless (the entry point registering that module itself under the name
``wxpartner`` made pytest refuse it: "Plugin already registered under a different name").
``-p no:wxpartner`` still turns it off."""

pytest_plugins = ["wxpartner.testing"]
