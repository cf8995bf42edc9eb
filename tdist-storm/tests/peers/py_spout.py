"""A pystorm spout for tdist-storm's peer test: emits 1, 2, 3 with themselves as ids,
re-emits failed ids, and logs acks and fails."""
from pystorm import Spout


class Numbers(Spout):
    def initialize(self, storm_conf, context):
        self.n = 0
        self.replay = []

    def next_tuple(self):
        if self.replay:
            n = self.replay.pop()
        elif self.n < 3:
            self.n += 1
            n = self.n
        else:
            return
        self.emit([n], tup_id=n)

    def ack(self, tup_id):
        self.log("acked %s" % tup_id)

    def fail(self, tup_id):
        self.log("failed %s" % tup_id)
        self.replay.append(tup_id)


if __name__ == "__main__":
    Numbers().run()
