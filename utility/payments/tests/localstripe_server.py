"""Run localstripe (PyPI ``localstripe``) on 127.0.0.1:PORT for the tests.

``python localstripe_server.py PORT``. Its store stays in memory: the
package's own ``/tmp/localstripe.pickle`` would be shared by every run on the
machine. Not a test module (the fixture in ``test_localstripe.py`` starts it).
"""

import sys

from aiohttp import web
from localstripe import resources, server

resources.Store.dump_to_disk = lambda self: None
resources.Store.try_load_from_disk = lambda self: None

if __name__ == "__main__":
    web.run_app(server.app, host="127.0.0.1", port=int(sys.argv[1]), print=None)
