"""Search your own images and videos.

* :class:`~personsearch.footage.searcher.Searcher` (exported as ``personsearch.Searcher``): a trained model
  that detects and embeds people in paths, PIL images or arrays;
* the gallery index over folders and videos (:mod:`personsearch.footage.store`,
  :mod:`personsearch.footage.builder`; ``personsearch index``);
* queries with filters, JSON, an HTML report and a contact sheet (:mod:`personsearch.footage.query`,
  :mod:`personsearch.footage.report`; ``personsearch query``).

Nothing heavy is imported here.
"""
