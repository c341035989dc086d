"""Push to Unleash: settings, transport, the flusher, the spool and the agent's lifecycle.

``impactagent.delivery.workers``, the Prometheus workers view's earlier import path, still
imports: its file is Prometheus's (``prometheus/earlier_paths/``), found through this
package's path, so that nothing in ``delivery/`` imports Prometheus.
"""

import os

__path__.append(os.path.join(os.path.dirname(os.path.dirname(__file__)), "prometheus",
                             "earlier_paths"))
