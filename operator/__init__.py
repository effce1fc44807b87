"""mutask operator: reconciles MultitaskSystem and TaskIntroduction resources into trainer Jobs."""
