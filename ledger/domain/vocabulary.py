"""The ledger's words for people, in Chinese and in English: the names of the fields a
report or an export shows, and of the codes it holds (programmes, line kinds,
statuses, event types, the known talent categories). Codes are what the API speaks;
these are how a person reads them. A code with no label here (a programme or category
someone coined) is shown as it is.
"""

from __future__ import annotations

from typing import Literal

Lang = Literal["zh", "en"]
LANGS: tuple[Lang, ...] = ("zh", "en")

#: field name -> (Chinese, English)
FIELDS: dict[str, tuple[str, str]] = {
    "position": ("序号", "Position"),
    "recorded_at": ("记录时间", "Recorded at"),
    "event_type": ("事件", "Event"),
    "fund_year": ("资金年度", "Fund year"),
    "year": ("资金年度", "Fund year"),
    "programme": ("项目", "Programme"),
    "kind": ("类别", "Kind"),
    "talent_id": ("人才编号", "Talent ID"),
    "grant_id": ("拨款编号", "Grant ID"),
    "payment_id": ("支付编号", "Payment ID"),
    "waiver_id": ("免租编号", "Waiver ID"),
    "clawback_id": ("追回编号", "Clawback ID"),
    "recovery_id": ("回款编号", "Recovery ID"),
    "bank_reference": ("银行流水号", "Bank reference"),
    "amount": ("金额", "Amount"),
    "actor": ("经办人", "Actor"),
    "reason": ("事由", "Reason"),
    "reference": ("文号", "Reference"),
    "request_id": ("请求编号", "Request ID"),
    "hash": ("哈希", "Hash"),
    "policy_reference": ("政策依据", "Policy reference"),
    "status": ("状态", "Status"),
    "proposed_by": ("申请人", "Proposed by"),
    "decision_by": ("审批人", "Decided by"),
    "decision_note": ("审批意见", "Decision note"),
    "effective_amount": ("有效金额", "Effective amount"),
    "paid": ("已支付", "Paid"),
    "returned": ("退回", "Returned"),
    "net_paid": ("净支付", "Net paid"),
    "payable": ("待支付", "Payable"),
    "on_hold": ("代发在途", "On hold in runs"),
    "clawed_back": ("已追回核定", "Clawed back"),
    "value_date": ("起息日", "Value date"),
    "returned_on": ("退回日期", "Returned on"),
    "return_reason": ("退回原因", "Return reason"),
    "appropriated": ("预算数", "Appropriated"),
    "committed": ("已承诺", "Committed"),
    "in_kind_value": ("实物价值", "In-kind value"),
    "execution_rate": ("执行率", "Execution rate"),
    "lag": ("进度差", "Lag"),
    "carried_forward": ("结转", "Carried forward"),
    "pending": ("待审批", "Pending"),
    "lapsed": ("结余", "Lapsed"),
    "clawback_recovered": ("追回入账", "Clawback recovered"),
    "outside_year": ("年度外", "Outside the year"),
    "month": ("月份", "Month"),
    "approved": ("已批准", "Approved"),
    "clawback_due": ("待追回", "Clawback due"),
}

#: code set -> code -> (Chinese, English)
CODES: dict[str, dict[str, tuple[str, str]]] = {
    "programme": {
        "settling_in": ("安家补贴", "Settling-in allowance"),
        "rent_subsidy": ("租房补贴", "Rent subsidy"),
        "housing": ("人才公寓免租", "Talent apartment rent waiver"),
        "project_support": ("项目资助", "Project support"),
    },
    "kind": {"cash": ("现金", "Cash"), "in_kind": ("实物", "In kind")},
    "category": {
        "leading_talent": ("领军人才", "Leading talent"),
        "doctorate": ("博士研究生", "Doctorate"),
        "master": ("硕士研究生", "Master's degree"),
        "double_first_class": ("“双一流”高校毕业生", "Double First-Class graduate"),
        "bachelor": ("全日制本科毕业生", "Full-time bachelor's graduate"),
        "urgently_needed": ("紧缺急需人才", "Urgently needed talent"),
    },
    "grant_status": {
        "proposed": ("待审批", "Proposed"),
        "approved": ("已批准", "Approved"),
        "rejected": ("已驳回", "Rejected"),
        "revoked": ("已撤销", "Revoked"),
    },
    "payment_status": {"paid": ("已支付", "Paid"), "returned": ("已退回", "Returned")},
    "fund_year_status": {"open": ("执行中", "Open"), "closed": ("已关闭", "Closed")},
    "event_type": {
        "FundYear.Opened": ("开立资金年度", "Fund year opened"),
        "FundYear.Appropriated": ("下达预算", "Appropriated"),
        "FundYear.Reserved": ("占用预算", "Budget reserved"),
        "FundYear.Released": ("释放预算", "Budget released"),
        "FundYear.Closed": ("关闭资金年度", "Fund year closed"),
        "Talent.Registered": ("人才登记", "Talent registered"),
        "Talent.Departed": ("人才离开", "Talent departed"),
        "Talent.PersonalDataErased": ("个人信息删除", "Personal data erased"),
        "Grant.Proposed": ("拨款申请", "Grant proposed"),
        "Grant.Approved": ("拨款批准", "Grant approved"),
        "Grant.Rejected": ("拨款驳回", "Grant rejected"),
        "Grant.Revoked": ("拨款撤销", "Grant revoked"),
        "Grant.Paid": ("拨款支付", "Grant paid"),
        "Grant.PaymentReturned": ("拨款支付退回", "Grant payment returned"),
        "Grant.ClawbackAssessed": ("拨款追回核定", "Grant clawback assessed"),
        "Payment.Recorded": ("支付登记", "Payment recorded"),
        "Payment.Returned": ("支付退回", "Payment returned"),
        "BankReference.Claimed": ("银行流水登记", "Bank reference claimed"),
        "RentWaiver.Granted": ("免租批准", "Rent waiver granted"),
        "RentWaiver.Ended": ("免租终止", "Rent waiver ended"),
        "Clawback.Assessed": ("追回核定", "Clawback assessed"),
        "Clawback.Recovered": ("追回入账", "Clawback recovered"),
        "Reconciliation.Imported": ("银行对账", "Bank statement reconciled"),
        "ApiKey.Issued": ("密钥签发", "API key issued"),
        "ApiKey.Revoked": ("密钥吊销", "API key revoked"),
        "Grant.Held": ("分期纳入代发批次", "Instalments put in a run"),
        "Grant.Released": ("分期退出代发批次", "Instalments out of a run"),
        "DisbursementRun.Prepared": ("代发批次生成", "Disbursement run prepared"),
        "DisbursementRun.Settled": ("代发批次结算", "Disbursement run settled"),
    },
    "talent_status": {"active": ("在本市", "Active"), "departed": ("已离开", "Departed")},
    "run_status": {
        "prepared": ("已生成", "Prepared"),
        "partially_settled": ("部分结算", "Partially settled"),
        "settled": ("已结算", "Settled"),
    },
    "item_status": {
        "pending": ("待银行处理", "Pending"),
        "settled": ("已结算", "Settled"),
        "rejected": ("被拒绝", "Rejected"),
    },
    "instalment_status": {
        "scheduled": ("未到期", "Scheduled"),
        "unpaid": ("未支付", "Unpaid"),
        "partially_paid": ("部分支付", "Partially paid"),
        "paid": ("已支付", "Paid"),
        "cancelled": ("已取消", "Cancelled"),
    },
    "bucket": {
        "matched": ("已匹配", "Matched"),
        "amount_mismatch": ("金额不符", "Amount mismatch"),
        "date_mismatch": ("日期不符", "Date mismatch"),
        "unknown_in_ledger": ("台账无记录", "Unknown in the ledger"),
        "missing_in_bank": ("银行无记录", "Missing in the bank"),
    },
    "direction": {"debit": ("支出", "Debit"), "credit": ("收入", "Credit")},
    "role": {
        "admin": ("管理员", "Admin"),
        "clerk": ("经办人", "Clerk"),
        "approver": ("审批人", "Approver"),
        "treasury": ("财务", "Treasury"),
        "auditor": ("审计员", "Auditor"),
    },
    "exception": {
        "departed_without_clawback": ("离开未追回", "Departed without a clawback"),
        "clawback_overdue": ("追回逾期", "Clawback overdue"),
        "duplicate_payment_suspected": ("疑似重复支付", "Duplicate payment suspected"),
        "approved_unpaid": ("批准后久未支付", "Approved and unpaid too long"),
        "reconciliation_unmatched": ("对账不符", "Statement line unmatched"),
        "clawback_exceeds_net_paid": ("追回超过净支付", "Clawback above net paid"),
        "statement_discontinuity": ("对账单不连续", "Statement discontinuity"),
        "double_housing_benefit": ("住房待遇重复享受", "Double housing benefit"),
        "run_item_overdue": ("代发逾期未结算", "Run item overdue"),
    },
}


def field_label(name: str, lang: Lang) -> str:
    """A field's name for people; the name itself when it has none."""
    labels = FIELDS.get(name)
    return labels[LANGS.index(lang)] if labels else name


def code_label(code_set: str, code: str, lang: Lang) -> str:
    """A code's name for people; the code itself when it has none."""
    labels = CODES[code_set].get(code)
    return labels[LANGS.index(lang)] if labels else code
