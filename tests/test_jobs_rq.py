

def test_stop_puts_rqs_methods_back(make_monitor: Any) -> None:
    from rq.worker import Worker as RqWorker

    before = (RqWorker.perform_job, RqWorker.handle_exception, Queue.create_job)
    monitor = make_monitor(capture_rq=True)
    assert RqWorker.perform_job is not before[0] and Queue.create_job is not before[2]
    monitor.stop()
    assert (RqWorker.perform_job, RqWorker.handle_exception, Queue.create_job) == before
