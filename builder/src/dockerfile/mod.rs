//! Dockerfile front end: parser, typed instructions, shell-word expansion, build checks.
