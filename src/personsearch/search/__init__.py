"""Search a gallery with a query and see the result.

* :class:`~personsearch.search.index.GalleryIndex`: a results file's gallery detections (features, boxes,
  images) ranked for one query by cosine similarity, over the whole gallery or a CUHK-SYSU ``TestG{N}``
  gallery, each hit marked correct when it overlaps the query person's annotated box (IoU >= 0.5);
* :func:`~personsearch.search.draw.render_ranking`: the query and its top hits as a PNG;
* :func:`~personsearch.search.compare.compare_with_random`: a model's metrics next to random embeddings on
  the same detections (what the CPU demo prints);
* the ``personsearch search`` and ``personsearch demo-report`` commands (:mod:`personsearch.search.commands`).
"""
