# A stand-in for MicroPython's machine module: lets esp32.py run under the
# WebAssembly MicroPython (no GPIO there). Records what the drivers did.
OUT = 1
IN = 0


class Pin:
    OUT = 1
    IN = 0
    PULL_UP = 2
    IRQ_FALLING = 4
    pins = {}

    def __init__(self, number, mode=None, pull=None, value=None):
        self.number = number
        self.level = value or 0
        self.handler = None
        Pin.pins[number] = self

    def value(self, level=None):
        if level is None:
            return self.level
        self.level = level
        return None

    def irq(self, trigger=None, handler=None):
        self.handler = handler


class UART:
    last = None

    def __init__(self, uart_id, baudrate=9600, tx=None, rx=None, timeout=0):
        self.written = []
        self.replies = []
        UART.last = self

    def any(self):
        return 0

    def read(self, size=None):
        return self.replies.pop(0) if self.replies else None

    def write(self, data):
        self.written.append(bytes(data))

    def flush(self):
        pass


class WDT:
    def __init__(self, timeout=0):
        self.fed = 0

    def feed(self):
        self.fed += 1
