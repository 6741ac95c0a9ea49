from celery import shared_task


# Its caller waits for the answer: the one task that keeps its result
# (CELERY_TASK_IGNORE_RESULT).
@shared_task(ignore_result=False)
def ping() -> str:
    """The smallest task there is: proves a worker takes work from the broker and answers."""
    return "pong"
