//! RUN sandbox: namespaces, overlay mounts, pivot_root, exec.
