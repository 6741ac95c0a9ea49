from celery import shared_task


@shared_task
def ping() -> str:
    """The smallest task there is: proves a worker takes work from the broker and answers."""
    return "pong"
