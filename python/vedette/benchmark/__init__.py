"""``vedette bench``: what this device does with vedette, measured on the device.

Each module measures one thing and returns :class:`~vedette.benchmark.common.Metric`
values: ``decisions`` (in-process ``Runtime.decide``), ``process`` (start-to-ready
and idle memory of ``vedette serve --example``), ``http_load`` (``POST /v1/tool``
over loopback), ``store`` (durable appends), ``hashing`` (BLAKE3, SHA-256),
``releases`` (verifying a signed release). ``suite`` runs them in order inside one
temporary directory; ``report`` prints and writes them; ``compare`` sets two
result files side by side.
"""
