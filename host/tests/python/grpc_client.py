"""Drives the gRPC API with a client we did not generate ourselves: Python
grpcio, with the stubs generated from proto/orderly/v1/orders.proto by
grpcio-tools. Usage: grpc_client.py <host:port> <product_id> <stubs_dir>
<token of user 42> <token of user 43>: bearer tokens with the `orders` scope.
Exits non-zero (with the reason) on the first answer that is not as promised.
"""

import sys
import uuid

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_status import rpc_status
from google.rpc import error_details_pb2

address, product_id, stubs = sys.argv[1], int(sys.argv[2]), sys.argv[3]
# Every call carries its caller's token, as a gRPC client sends call credentials.
as_42 = [("authorization", f"Bearer {sys.argv[4]}")]
as_43 = [("authorization", f"Bearer {sys.argv[5]}")]
sys.path.insert(0, stubs)
from orderly.v1 import orders_pb2, orders_pb2_grpc  # noqa: E402


def check(condition, what):
    if not condition:
        sys.exit(f"FAILED: {what}")


channel = grpc.insecure_channel(address)
orders = orders_pb2_grpc.OrderServiceStub(channel)
correlation_id = f"python-{uuid.uuid4().hex}"

# CreateOrder with metadata, the seeds' single-line shorthand; the answer echoes the id.
order, call = orders.CreateOrder.with_call(
    orders_pb2.CreateOrderRequest(user_id=42, product_id=product_id, quantity=2),
    metadata=as_42 + [("x-correlation-id", correlation_id), ("idempotency-key", correlation_id)],
    timeout=10,
)
echoed = dict(call.initial_metadata()).get("x-correlation-id")
check(echoed == correlation_id, f"correlation id echoed: {echoed!r}")
check(order.status == orders_pb2.ORDER_STATUS_PENDING, f"pending: {order.status}")
check(order.items[0].quantity == 2 and order.total > 0, f"priced: {order}")

# The same key and request: the first answer again, marked as a replay.
again, call = orders.CreateOrder.with_call(
    orders_pb2.CreateOrderRequest(user_id=42, product_id=product_id, quantity=2),
    metadata=as_42 + [("idempotency-key", correlation_id)],
    timeout=10,
)
check(again.id == order.id, "replayed the first order")
check(dict(call.initial_metadata()).get("idempotent-replayed") == "true", "marked as replayed")

fetched = orders.GetOrder(orders_pb2.GetOrderRequest(id=order.id), metadata=as_42, timeout=10)
check(fetched == order, "GetOrder answers what CreateOrder answered")
page = orders.ListOrders(orders_pb2.ListOrdersRequest(user_id=42, page_size=10), metadata=as_42, timeout=10)
check([o.id for o in page.orders] == [order.id], f"listed: {page}")


def error_info(error):
    status = rpc_status.from_call(error)
    for detail in status.details if status else []:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return info
    return None


# Without a token, or with another customer's, user 42's order is out of reach.
try:
    orders.GetOrder(orders_pb2.GetOrderRequest(id=order.id), timeout=10)
    sys.exit("FAILED: an order was read without a token")
except grpc.RpcError as error:
    check(error.code() == grpc.StatusCode.UNAUTHENTICATED, f"UNAUTHENTICATED: {error.code()}")
    check(error_info(error).reason == "unauthorized", f"ErrorInfo: {error_info(error)}")
try:
    orders.GetOrder(orders_pb2.GetOrderRequest(id=order.id), metadata=as_43, timeout=10)
    sys.exit("FAILED: another customer read the order")
except grpc.RpcError as error:
    check(error.code() == grpc.StatusCode.NOT_FOUND, f"NOT_FOUND for another customer: {error.code()}")
try:
    orders.ListOrders(orders_pb2.ListOrdersRequest(user_id=42), metadata=as_43, timeout=10)
    sys.exit("FAILED: another customer listed the orders of user 42")
except grpc.RpcError as error:
    check(error.code() == grpc.StatusCode.PERMISSION_DENIED, f"PERMISSION_DENIED: {error.code()}")
    check(error_info(error).reason == "forbidden", f"ErrorInfo: {error_info(error)}")

# A refusal carries google.rpc details a foreign client can read.
try:
    orders.CreateOrder(
        orders_pb2.CreateOrderRequest(product_id=product_id, quantity=0), metadata=as_42, timeout=10
    )
    sys.exit("FAILED: a zero quantity was accepted")
except grpc.RpcError as error:
    check(error.code() == grpc.StatusCode.INVALID_ARGUMENT, f"INVALID_ARGUMENT: {error.code()}")
    status = rpc_status.from_call(error)
    check(status is not None, "rich status details are present")
    kinds = {}
    for detail in status.details:
        for kind in (error_details_pb2.BadRequest, error_details_pb2.ErrorInfo):
            if detail.Is(kind.DESCRIPTOR):
                message = kind()
                detail.Unpack(message)
                kinds[kind.__name__] = message
    check("BadRequest" in kinds and kinds["BadRequest"].field_violations, f"BadRequest: {status.details}")
    check(kinds.get("ErrorInfo") and kinds["ErrorInfo"].reason == "validation-failed", f"ErrorInfo: {kinds}")

try:
    orders.GetOrder(orders_pb2.GetOrderRequest(id=10**12), metadata=as_42, timeout=10)
    sys.exit("FAILED: a missing order was found")
except grpc.RpcError as error:
    check(error.code() == grpc.StatusCode.NOT_FOUND, f"NOT_FOUND: {error.code()}")

# Health and reflection, as grpcurl and load balancers use them: health
# without a token, reflection with one.
health = health_pb2_grpc.HealthStub(channel)
answer = health.Check(health_pb2.HealthCheckRequest(service="orderly.v1.OrderService"), timeout=10)
check(answer.status == health_pb2.HealthCheckResponse.SERVING, f"SERVING: {answer}")
reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
replies = reflection.ServerReflectionInfo(
    iter([reflection_pb2.ServerReflectionRequest(list_services="")]), metadata=as_42, timeout=10
)
services = {service.name for reply in replies for service in reply.list_services_response.service}
check("orderly.v1.OrderService" in services, f"reflection lists the service: {services}")

print(f"ok: order {order.id} placed, replayed, read, listed; refusals and health as promised")
