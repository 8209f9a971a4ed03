from tests.server.world import enrol


def test_enrol_hello_pull_push(app, client, world):
    with app.app_context():
        device = enrol(client, "reader")
    hello = device.hello()
    assert hello.status_code == 200, hello.get_json()
    assert hello.get_json()["scope"] == {"jobs": 0, "routes": 1, "meters": 4}
    records = device.pull_all(limit=3)
    kinds = {(r["entity"], r["id"]) for r in records}
    assert ("route", "R1") in kinds and ("meter", "M1") in kinds and ("meter", "M5") not in kinds
    response = device.push(device.reading("M1", 1300), device.reading("M5", 10))
    results = response.get_json()["results"]
    assert [r["status"] for r in results] == ["applied", "rejected"], results
    assert results[1]["error"]["code"] == "not_in_scope"
    assert device.pull_all() == []  # its own reading is not echoed back
    with app.app_context():
        spare = enrol(client, "reader", "spare")
    assert [r["entity"] for r in spare.pull_all()].count("meter_reading") == 1  # the user's other handheld has it
