"""Thin routers: translate HTTP to :class:`service.recommender.Recommender` calls; errors go to ``service.error_handlers``."""
