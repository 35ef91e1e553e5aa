//! Differ: an overlay upperdir (or a copied tree compared with its parent) → a layer tar.
