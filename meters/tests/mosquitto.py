"""The test broker lives in ``meters.broker_process`` (the demo uses it too)."""

from meters.broker_process import MosquittoProcess, MqttProbe, connack_code, free_port, mosquitto_binary

__all__ = ["MosquittoProcess", "MqttProbe", "connack_code", "free_port", "mosquitto_binary"]
