"""The dashboard's pages (SPEC §9): ``frame`` is what every page shares (settings, the
one store, the sidebar filters, live refresh); each other module is one page with its
own URL. Layout only: data comes from ``dashboard.store`` through ``dashboard.panels``,
figures from ``dashboard.charts``, numbers from ``dashboard.metrics``."""
