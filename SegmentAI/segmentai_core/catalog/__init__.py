"""The catalog of public models and their installer: download, verify, unpack safely, import.

``segmentai models available`` lists :func:`load_catalog`'s entries; ``segmentai models install ID``
runs :func:`install_model`. Importing this package imports neither torch nor MONAI.
"""

from .catalog import Catalog, CatalogEntry, CatalogPart, catalog_path, load_catalog

__all__ = ["Catalog", "CatalogEntry", "CatalogPart", "catalog_path", "load_catalog"]
