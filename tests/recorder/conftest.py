"""Import mitmproxy's addons once with their dependencies' import-time warnings muted.

`mitmproxy.addons` pulls in passlib (which imports the deprecated `crypt`) and
ldap3 (which uses names pyasn1 deprecated). Those warnings are not ours, but
pytest runs with warnings as errors; importing here, before the test modules,
keeps them out of every test while any warning our code causes still fails.
"""

import warnings

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import mitmproxy.addons  # noqa: F401
