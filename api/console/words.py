"""The console's words and formats, in Chinese and English.

The names of fields and codes (programmes, kinds, statuses, event types, categories)
come from `ledger.domain.vocabulary`, the table the exports use too; this module holds
only what is the console's own: page titles, buttons, hints and messages.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any
from zoneinfo import ZoneInfo

from ledger.domain.vocabulary import CODES, LANGS, Lang, code_label, field_label

#: key -> (Chinese, English)
WORDS: dict[str, tuple[str, str]] = {
    "product": ("人才专项资金台账", "Talent benefits ledger"),
    "skip": ("跳到正文", "Skip to content"),
    "nav": ("主导航", "Main navigation"),
    "fund_years": ("资金年度", "Fund years"),
    "talents": ("人才", "Talents"),
    "grants": ("拨款", "Grants"),
    "payments": ("支付", "Payments"),
    "exceptions": ("异常", "Exceptions"),
    "reconciliations": ("银行对账", "Reconciliations"),
    "disbursement_runs": ("代发批次", "Disbursement runs"),
    "checkpoints": ("检查点与验证", "Checkpoints and verification"),
    "sign_in": ("登录", "Sign in"),
    "sign_out": ("退出", "Sign out"),
    "api_key": ("API 密钥", "API key"),
    "sign_in_hint": (
        "输入您的 API 密钥。密钥只保存在本浏览器的会话 Cookie 中。",
        "Enter your API key. It is kept only in this browser's session cookie.",
    ),
    "bad_key": ("密钥无效、已过期或已被吊销。", "The key is unknown, expired or revoked."),
    "session_ended": ("会话已结束，请重新登录。", "Your session has ended: sign in again."),
    "signed_in_as": ("当前用户", "Signed in as"),
    "language": ("English", "中文"),
    "language_label": ("切换语言", "Switch language"),
    "all_years": ("全部年度合计", "All years"),
    "by_programme": ("各项目累计（全部年度）", "By programme, all years"),
    "lines": ("预算科目", "Lines"),
    "totals": ("合计", "Total"),
    "available": ("可用", "Available"),
    "lines_chart": ("各科目预算、承诺与支付", "Appropriated, committed and paid by line"),
    "years_chart": ("各年度预算、承诺与支付", "Appropriated, committed and paid by year"),
    "execution_chart": ("逐月累计执行率与序时进度", "Execution by month against time elapsed"),
    "execution_on": ("执行情况截至", "Execution as of"),
    "elapsed_share": ("序时进度", "Time elapsed"),
    "cumulative_rate": ("累计执行率", "Cumulative execution"),
    "year_end": ("年终结转和结余", "Year-end statement"),
    "exports": ("导出", "Exports"),
    "audit_trail": ("审计轨迹", "Audit trail"),
    "execution": ("预算执行", "Budget execution"),
    "filter": ("筛选", "Filter"),
    "any": ("全部", "Any"),
    "next_page": ("下一页", "Next page"),
    "first_page": ("第一页", "First page"),
    "empty_grants": (
        "没有符合条件的拨款。请放宽筛选条件，或由经办人通过 API 提交拨款申请。",
        "No grant matches. Widen the filters, or have a clerk propose a grant through the API.",
    ),
    "empty_talents": (
        "没有符合条件的人才。请放宽筛选条件，或由经办人登记人才。",
        "No talent matches. Widen the filters, or have a clerk register a talent.",
    ),
    "empty_payments": (
        "没有符合条件的支付。支付由财务通过代发批次或 API 登记。",
        "No payment matches. Treasury records payments in disbursement runs or through the API.",
    ),
    "empty_fund_years": (
        "还没有资金年度。请管理员通过 API 开立资金年度并下达预算。",
        "No fund year yet. An admin opens one and appropriates its budget through the API.",
    ),
    "empty_exceptions": ("截至该日没有异常。", "No exception as of that date."),
    "empty_reconciliations": (
        "还没有对账记录。财务可在下方上传银行对账单。",
        "No reconciliation yet. Treasury uploads a bank statement below.",
    ),
    "empty_runs": (
        "还没有代发批次。财务可在下方生成批次。",
        "No disbursement run yet. Treasury prepares one below.",
    ),
    "empty_items": ("该批次没有明细。", "This run has no items."),
    "empty_checkpoints": (
        "还没有签名检查点。审计员或管理员可在下方签署一个。",
        "No signed checkpoint yet. An auditor or admin signs one below.",
    ),
    "empty_history": ("没有事件。", "No event."),
    "profile": ("基本信息", "Profile"),
    "name": ("姓名", "Name"),
    "category": ("人才类别", "Category"),
    "employer": ("工作单位", "Employer"),
    "arrived_on": ("来本市日期", "Arrived on"),
    "departed_on": ("离开日期", "Departed on"),
    "service_commitment_until": ("服务期至", "Service commitment until"),
    "personal_data_erased": ("个人信息已删除", "Personal data erased"),
    "balances": ("余额", "Balances"),
    "history": ("历史事件", "History"),
    "events": ("事件及证明", "Events and their proof"),
    "instalments": ("分期", "Instalments"),
    "number": ("期次", "No."),
    "due_on": ("应付日期", "Due on"),
    "covered": ("已被最新签名检查点覆盖", "Covered by the latest signed checkpoint"),
    "not_covered": ("尚未被签名检查点覆盖", "Not yet covered by a signed checkpoint"),
    "coverage": ("检查点覆盖", "Checkpoint coverage"),
    "latest_checkpoint": ("最新签名检查点", "Latest signed checkpoint"),
    "on": ("截至日期", "As of"),
    "show": ("查看", "Show"),
    "code": ("代码", "Code"),
    "detail": ("说明", "Detail"),
    "upload_statement": ("上传银行对账单", "Upload a bank statement"),
    "statement_file": ("对账单文件", "Statement file"),
    "statement_format": ("格式", "Format"),
    "upload": ("上传", "Upload"),
    "period": ("期间", "Period"),
    "line_count": ("行数", "Lines"),
    "line": ("行", "Line"),
    "direction": ("方向", "Direction"),
    "ledger_side": ("台账记录", "In the ledger"),
    "prepare_run": ("生成代发批次", "Prepare a disbursement run"),
    "run_id": ("批次编号", "Run ID"),
    "prepare": ("生成", "Prepare"),
    "items": ("笔数", "Items"),
    "total": ("总额", "Total"),
    "settled": ("已结算", "Settled"),
    "rejected": ("已拒绝", "Rejected"),
    "run_items": ("批次明细", "Run items"),
    "instalment": ("期次", "Instalment"),
    "download_pain001": ("下载付款文件 pain.001", "Download the payment file (pain.001)"),
    "upload_pain002": ("上传银行回执 pain.002", "Upload the bank's status report (pain.002)"),
    "status_report": ("回执文件", "Status report file"),
    "settle": ("结算", "Settle"),
    "sign_checkpoint": ("签署检查点", "Sign a checkpoint"),
    "checkpoint_id": ("检查点编号", "Checkpoint"),
    "tree_size": ("事件数", "Events"),
    "head_position": ("截至序号", "Up to position"),
    "root": ("默克尔根", "Merkle root"),
    "signed_at": ("签署时间", "Signed at"),
    "note": ("签名记录", "Signed note"),
    "verify": ("验证哈希链与检查点", "Verify the chain and checkpoints"),
    "verified": ("验证通过", "Intact"),
    "not_verified": ("验证失败", "Verification failed"),
    "events_checked": ("已验证事件", "Events checked"),
    "checkpoints_checked": ("已验证检查点", "Checkpoints checked"),
    "download_bundle": ("下载审计包", "Download the audit bundle"),
    "bundle_hint": (
        "审计包可在任何装有 Python 与 cryptography 的电脑上用 ledger-verify 独立验证。",
        "Check a bundle on any machine with Python and cryptography, with ledger-verify.",
    ),
    "forbidden": ("您的角色不能查看或执行此操作。", "Your roles do not allow this."),
    "form_expired": (
        "表单已过期，请重新加载页面后再提交。",
        "The form expired: load the page again.",
    ),
    "not_found": ("未找到。", "Not found."),
    "refused": ("请求被拒绝", "Refused"),
    "back_home": ("返回资金年度", "Back to the fund years"),
    "yes": ("是", "Yes"),
    "no": ("否", "No"),
    "csv": ("CSV", "CSV"),
    "xlsx": ("Excel", "Excel"),
    "value_date_from": ("起息日起", "Value date from"),
    "value_date_to": ("起息日止", "Value date to"),
    "arrived_from": ("来本市日期起", "Arrived from"),
    "arrived_to": ("来本市日期止", "Arrived to"),
    "talent": ("人才", "Talent"),
    "grant": ("拨款", "Grant"),
    "payment": ("支付", "Payment"),
    "fund_year": ("资金年度", "Fund year"),
    "net_paid_all": ("全部年度净支付", "Net paid over all years"),
    "tick": ("选择", "Tick"),
    "sum_ticked": ("合计所选项目", "Sum the ticked programmes"),
    "ticked_total": ("所选项目合计", "The ticked programmes"),
}

MONTHS_EN = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]


class Words:
    """What a template needs to speak one language: `w.word("key")`, `w.field(name)`,
    `w.code(set, code)` and the formats of money, dates, instants and shares."""

    def __init__(self, lang: Lang, timezone: ZoneInfo) -> None:
        self.lang = lang
        self.other: Lang = LANGS[1 - LANGS.index(lang)]
        self.html_lang = "zh-CN" if lang == "zh" else "en"
        self._timezone = timezone

    def word(self, key: str) -> str:
        return WORDS[key][LANGS.index(self.lang)]

    def field(self, name: str) -> str:
        return field_label(name, self.lang)

    def code(self, code_set: str, code: str | None) -> str:
        return "—" if code is None else code_label(code_set, code, self.lang)

    @staticmethod
    def codes(code_set: str) -> list[str]:
        """The codes of a set, in the table's order (for a filter's choices)."""
        return list(CODES[code_set])

    @staticmethod
    def money(amount: str | Decimal | None) -> str:
        """`¥1,234,567.00`, in both languages (as a Chinese finance office writes it)."""
        if amount is None:
            return "—"
        value = Decimal(amount).quantize(Decimal("0.01"), ROUND_HALF_EVEN)
        sign = "-" if value < 0 else ""
        return f"{sign}¥{abs(value):,.2f}"

    @staticmethod
    def count(value: int | None) -> str:
        return "—" if value is None else f"{value:,}"

    @staticmethod
    def share(value: str | Decimal | None) -> str:
        """A share (`"0.5014"`) as a percentage to two decimals: `50.14%`."""
        if value is None:
            return "—"
        percent = (Decimal(value) * 100).quantize(Decimal("0.01"), ROUND_HALF_EVEN)
        return f"{percent}%"

    def date(self, value: str | date | None) -> str:
        if value is None:
            return "—"
        day = value if isinstance(value, date) else date.fromisoformat(value)
        if self.lang == "zh":
            return f"{day.year}年{day.month}月{day.day}日"
        return f"{day.day} {MONTHS_EN[day.month - 1]} {day.year}"

    def instant(self, value: str | None) -> str:
        """An instant in the business time zone, to the minute."""
        if value is None:
            return "—"
        moment = datetime.fromisoformat(value).astimezone(self._timezone)
        return f"{self.date(moment.date())} {moment:%H:%M}"

    def month(self, value: str) -> str:
        month = int(value[5:7])
        if self.lang == "zh":
            return f"{month}月"
        return MONTHS_EN[month - 1]

    def yes_no(self, value: Any) -> str:
        return self.word("yes" if value else "no")
