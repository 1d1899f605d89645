"""
Services as code: a services document (what C{pycm apply} sends, what the
daemon's C{--services FILE} reads) made into running containers.

  - L{pycm.services.servicefile}: a services file (TOML) read into the
    C{apply} request's document; L{pycm.services.envfile}: environment
    files; L{pycm.services.tomllines}: where each key of a TOML file is.
    The client's and the daemon's.
  - L{pycm.services.definition}: the document, validated, as a
    L{pycm.services.definition.ServiceSet} of container specs and
    dependencies.
  - L{pycm.services.order}: the dependency graph: start order, cycles and
    unknown dependencies refused.
  - L{pycm.services.config}: the labels an applied container carries, and
    the per-field hashes that tell which fields changed.
  - L{pycm.services.plan}: the containers there are and the services
    wanted, made into steps (create, recreate, keep, start, remove).
  - L{pycm.services.applier}: a plan carried out on a backend.
"""
