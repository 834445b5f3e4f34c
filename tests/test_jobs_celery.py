

# -- in this process: eager tasks (Celery runs them through the same tracer and signals) -------

def eager_app() -> Celery:
    app = Celery("eager", broker="memory://", backend="cache+memory://")
    app.conf.update(task_store_eager_result=False)
    return app


def test_capture_body_adds_the_scrubbed_args_and_kwargs(make_monitor: Any) -> None:
    from exporter.integrations.celery import CeleryIntegration

    monitor = make_monitor(integrations=[CeleryIntegration(component="jobs",
                                                           capture_body=True)])
    app = eager_app()

    @app.task(name="eager.charge")
    def charge(order_id: str, card: dict[str, str], api_key: str = "") -> None:
        raise ValueError(f"card declined for {order_id}")

    charge.apply(args=["A-1", {"number": "4111", "password": "pw"}],
                 kwargs={"api_key": "k-123"})
    assert monitor.flush(10)
    [group] = monitor.list_groups()
    report = monitor.get_group(group["error_id"])["report"]
    assert report["mechanism"] == "celery" and report["handled"] is False
    assert report["component"] == "jobs" and report["operation"] == "eager.charge"
    task = report["context"]["task"]
    assert task["args"] == ["A-1", {"number": "4111", "password": "[Filtered]"}]
    assert task["kwargs"] == {"api_key": "[Filtered]"}
    assert monitor.registry.get_sample_value(
        "app_operation_duration_seconds_count",
        {"component": "jobs", "plugin": "", "operation": "eager.charge",
         "outcome": "error"}) == 1


def test_stop_disconnects_the_hook(make_monitor: Any) -> None:
    from celery import signals

    monitor = make_monitor(capture_celery=True)
    receivers = lambda: len(signals.task_prerun.receivers)  # noqa: E731
    connected = receivers()
    assert connected >= 1
    monitor.stop()
    assert receivers() == connected - 1
    app = eager_app()

    @app.task(name="eager.after_stop")
    def after_stop() -> None:
        raise ValueError("not seen")

    after_stop.apply()
    assert monitor.list_groups() == []
