"""``medvl ui``: a local web workbench on Gradio (an optional extra: ``pip install 'medvl[ui]'``).

Tabs: Chat (:mod:`medvl.ui.chat`), Results (:mod:`medvl.ui.results`), Compare
(:mod:`medvl.ui.compare`) and Data (:mod:`medvl.ui.data_tab`); :mod:`medvl.ui.app` assembles
them. Each tab keeps its logic in plain functions that tests call without a browser, and imports
Gradio only inside its ``build_*_tab`` function, so the logic works without Gradio installed.
"""
