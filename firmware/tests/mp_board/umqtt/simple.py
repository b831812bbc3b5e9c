# A stand-in for micropython-lib's umqtt.simple with the same method
# signatures; records calls and delivers queued messages on check_msg().
class MQTTClient:
    instances = []

    def __init__(self, client_id, server, port=0, user=None, password=None, keepalive=0, ssl=None):
        self.args = (client_id, server, port, user, password, keepalive, ssl)
        self.calls = []
        self.inbox = []
        self.callback = None
        MQTTClient.instances.append(self)

    def set_callback(self, callback):
        self.callback = callback

    def set_last_will(self, topic, msg, retain=False, qos=0):
        self.calls.append(("will", topic, msg, retain, qos))

    def connect(self, clean_session=True):
        self.calls.append(("connect", clean_session))

    def subscribe(self, topic, qos=0):
        self.calls.append(("subscribe", topic, qos))

    def publish(self, topic, msg, retain=False, qos=0):
        self.calls.append(("publish", topic, msg, retain, qos))

    def ping(self):
        self.calls.append(("ping",))

    def check_msg(self):
        while self.inbox:
            topic, msg = self.inbox.pop(0)
            self.callback(topic, msg)

    def disconnect(self):
        self.calls.append(("disconnect",))
